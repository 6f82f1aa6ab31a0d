//! The help overlay: every key, and what the header numbers mean.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Widget};

use super::centered;
use crate::app::App;
use crate::format::truncate;

const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  k j", "move (wraps)"),
    ("PgUp PgDn", "move a page"),
    ("g G", "first / last lot"),
    ("/", "filter (Enter keep, Esc clear)"),
    ("s", "cycle sort: ends soonest, id, price, bids, lane"),
    ("l", "show one lane (cycles; then all)"),
    ("f", "floor display on / off"),
    ("b", "bid on the lot (bidder token)"),
    ("+ -  0-9", "bid box: step / type amount"),
    ("m", "bid box: maximum (proxy bid) / bid"),
    ("Enter Esc", "bid box: place / cancel"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

/// Draw the help popup over `area`.
pub fn render(_app: &App, area: Rect, buf: &mut Buffer) {
    let popup = centered(area, 60, KEYS.len() as u16 + 6);
    Clear.render(popup, buf);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .title(Span::styled(" Help ", Style::new().bold()));
    let inner = block.inner(popup);
    block.render(popup, buf);
    let width = inner.width as usize;
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| {
            let key = format!("{key:<11}");
            let what = truncate(what, width.saturating_sub(11));
            Line::from(vec![
                Span::styled(key, Style::new().bold()),
                Span::raw(what),
            ])
        })
        .collect();
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        truncate(
            "Header: seq = mirror's log position; to screen = commit-to-screen latency",
            width,
        ),
        Style::new().dim(),
    )));
    Paragraph::new(lines).render(inner, buf);
}
