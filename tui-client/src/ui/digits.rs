//! Big block digits for the floor display: five rows high, three columns per digit.

/// Rows of the glyphs.
pub const HEIGHT: usize = 5;

fn glyph(c: char) -> [&'static str; HEIGHT] {
    match c {
        '0' => ["███", "█ █", "█ █", "█ █", "███"],
        '1' => [" █ ", "██ ", " █ ", " █ ", "███"],
        '2' => ["███", "  █", "███", "█  ", "███"],
        '3' => ["███", "  █", "███", "  █", "███"],
        '4' => ["█ █", "█ █", "███", "  █", "  █"],
        '5' => ["███", "█  ", "███", "  █", "███"],
        '6' => ["███", "█  ", "███", "█ █", "███"],
        '7' => ["███", "  █", "  █", "  █", "  █"],
        '8' => ["███", "█ █", "███", "█ █", "███"],
        '9' => ["███", "█ █", "███", "  █", "███"],
        ',' => [" ", " ", " ", "▄", "▘"],
        '.' => [" ", " ", " ", " ", "▄"],
        ':' => [" ", "▀", " ", "▀", " "],
        '-' => ["   ", "   ", "███", "   ", "   "],
        _ => ["   ", "   ", "   ", "   ", "   "],
    }
}

/// `text` in big digits, one string per row; glyphs are separated by one column.
pub fn render(text: &str) -> [String; HEIGHT] {
    let mut rows: [String; HEIGHT] = Default::default();
    for (i, c) in text.chars().enumerate() {
        for (row, part) in rows.iter_mut().zip(glyph(c)) {
            if i > 0 {
                row.push(' ');
            }
            row.push_str(part);
        }
    }
    rows
}

/// Columns `text` takes in big digits.
pub fn width(text: &str) -> usize {
    render(text)[0].chars().count()
}

/// `text` in big digits at double size, for wall displays with room to spare. Each
/// cell becomes a 2x2 square; half and quarter blocks become exactly the quadrants
/// they cover, so commas and points keep their shape.
pub fn render_double(text: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(HEIGHT * 2);
    for row in render(text) {
        for half in 0..2 {
            let mut line = String::new();
            for c in row.chars() {
                let [top_left, top_right, bottom_left, bottom_right] = quadrants(c);
                let (left, right) = if half == 0 {
                    (top_left, top_right)
                } else {
                    (bottom_left, bottom_right)
                };
                line.push(if left { '█' } else { ' ' });
                line.push(if right { '█' } else { ' ' });
            }
            out.push(line);
        }
    }
    out
}

/// Which quadrants of a cell a glyph character fills: top-left, top-right,
/// bottom-left, bottom-right.
fn quadrants(c: char) -> [bool; 4] {
    match c {
        '█' => [true; 4],
        '▀' => [true, true, false, false],
        '▄' => [false, false, true, true],
        '▘' => [true, false, false, false],
        _ => [false; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up() {
        let rows = render("12,345.6:0");
        assert!(
            rows.iter()
                .all(|row| row.chars().count() == width("12,345.6:0"))
        );
        assert_eq!(render("10")[4], "███ ███");
        let double = render_double("1");
        assert_eq!(double.len(), 2 * HEIGHT);
        assert_eq!(double[0], "  ██  ");
        assert_eq!(double[1], double[0]);
        assert_eq!(render_double(",")[6..], ["  ", "██", "█ ", "  "]);
    }
}
