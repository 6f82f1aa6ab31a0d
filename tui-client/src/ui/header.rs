//! The top line: connection state (prominent unless live), mirror sequence, lot
//! count, notices per second and latencies.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::app::{App, Link};
use crate::format;
use crate::stats::short;

/// Draw the header into `area` (one line).
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let badge_style = match app.link {
        Link::Live => Style::new().fg(Color::Black).bg(Color::Green),
        Link::Connecting | Link::Syncing | Link::Degraded { .. } => {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        }
        Link::Reconnecting { .. } | Link::Stale { .. } | Link::Failed | Link::Closed => {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD | Modifier::SLOW_BLINK)
        }
    };
    let mut spans = vec![
        Span::styled(" lotsync ", Style::new().bold()),
        Span::styled(format!(" {} ", app.link.label(app.now)), badge_style),
    ];
    let mut parts = vec![
        format!("seq {}", format::thousands(app.stats.seq)),
        format!("{} lots", app.lots.len()),
        format!("{:.1} notices/s", app.stats.notices_per_sec),
    ];
    if let (Some(p50), Some(p99)) = (app.stats.latency(0.5), app.stats.latency(0.99)) {
        parts.push(format!("to screen p50 {} p99 {}", short(p50), short(p99)));
    }
    if app.stats.mirror_p99 > std::time::Duration::ZERO {
        parts.push(format!("to mirror p99 {}", short(app.stats.mirror_p99)));
    }
    // Whole parts only: a number cut in half would be misread.
    let mut used: usize = spans.iter().map(|span| span.width()).sum();
    for part in parts {
        let width = part.chars().count() + 2;
        if used + width > area.width as usize {
            break;
        }
        used += width;
        spans.push(Span::raw("  "));
        spans.push(Span::raw(part));
    }
    Line::from(spans)
        .style(Style::new().bg(Color::DarkGray))
        .render(area, buf);
}
