//! The bottom two lines: a status line (messages, the filter prompt, or the current
//! sort and filter) and the keys of the current mode.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::app::{App, Mode, Tone};

/// Draw the footer into `area` (two lines).
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let [status, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    status_line(app).render(status, buf);
    keys_line(app, keys.width as usize).render(keys, buf);
}

fn status_line(app: &App) -> Line<'static> {
    if app.mode() == Mode::Filter {
        return Line::from(vec![
            Span::styled("filter: ", Style::new().bold()),
            Span::raw(app.filter.clone()),
            Span::styled("▏", Style::new().fg(Color::Yellow)),
            Span::styled("  Enter keep · Esc clear", Style::new().dim()),
        ]);
    }
    if let Some(status) = app.current_status() {
        let style = match status.tone {
            Tone::Info => Style::new().fg(Color::Cyan),
            Tone::Good => Style::new().fg(Color::Green).bold(),
            Tone::Bad => Style::new().fg(Color::Red).bold(),
        };
        return Line::from(Span::styled(status.text.clone(), style));
    }
    let shown = app.visible().len();
    let mut text = format!("sort: {}", app.sort.label());
    if !app.filter.is_empty() {
        text.push_str(&format!(" · filter: {}", app.filter));
    }
    text.push_str(&format!(" · {shown} of {} lots", app.lots.len()));
    Line::from(Span::styled(text, Style::new().dim()))
}

fn keys_line(app: &App, width: usize) -> Line<'static> {
    let pairs: Vec<(&str, &str)> = match app.mode() {
        Mode::Dashboard => {
            let mut keys = vec![
                ("↑↓/jk", "move"),
                ("/", "filter"),
                ("s", "sort"),
                ("f", "floor"),
            ];
            if app.options.bidder {
                keys.push(("b", "bid"));
            }
            keys.extend([("?", "help"), ("q", "quit")]);
            keys
        }
        Mode::Floor => {
            let mut keys = vec![("f", "dashboard")];
            if app.options.bidder {
                keys.push(("b", "bid"));
            }
            keys.extend([("?", "help"), ("q", "quit")]);
            keys
        }
        Mode::Filter => vec![("type", "filter"), ("Enter", "keep"), ("Esc", "clear")],
        Mode::Help => vec![("any key", "close"), ("q", "quit")],
        Mode::BidBox => vec![
            ("+/-", "step"),
            ("0-9", "type"),
            ("Enter", "place"),
            ("Esc", "cancel"),
        ],
    };
    let mut spans = Vec::new();
    let mut used = 0;
    for (key, what) in pairs {
        // Whole hints only, so a narrow footer never shows half a key.
        let hint = key.chars().count() + what.chars().count() + 4;
        if used + hint > width {
            break;
        }
        used += hint;
        spans.push(Span::styled(
            format!(" {key} "),
            Style::new().fg(Color::Black).bg(Color::Gray),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans)
}
