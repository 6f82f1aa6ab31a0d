//! The bid box popup: the lot, its minimum next bid, the amount about to be placed
//! and, after an answer, what came of it.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Widget, Wrap};

use super::centered;
use crate::app::App;
use crate::bid::BidPhase;
use crate::format::{self, truncate};

/// Draw the bid box over `area`.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some((bid, lot)) = app.bid_box() else {
        return;
    };
    let popup = centered(area, 56, 12);
    Clear.render(popup, buf);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(
            format!(" Bid on {} ", bid.lot_id),
            Style::new().bold(),
        ));
    let inner = block.inner(popup);
    block.render(popup, buf);
    let width = inner.width as usize;
    let Some(lot) = lot else {
        Paragraph::new("This lot is no longer in the auction. Esc closes.").render(inner, buf);
        return;
    };
    let money = |amount| format::money(&lot.currency, amount);
    let mut lines = vec![
        Line::from(Span::styled(
            truncate(&lot.title, width),
            Style::new().bold(),
        )),
        Line::from(truncate(
            &format!(
                "current {} · {} · {}",
                money(lot.current_price),
                super::floor::bids(lot.bid_count),
                lot.status
            ),
            width,
        )),
        Line::from(truncate(
            &format!(
                "minimum {} · step {}",
                money(lot.min_next_bid()),
                money(lot.increment)
            ),
            width,
        )),
        Line::default(),
        Line::from(vec![
            Span::raw(if bid.max { "your max  " } else { "your bid  " }),
            Span::styled(
                format!(" {} ", money(bid.amount)),
                Style::new().fg(Color::Black).bg(Color::Cyan).bold(),
            ),
        ]),
        Line::default(),
    ];
    let phase = match &bid.phase {
        BidPhase::Editing => Line::from(Span::styled(
            if bid.max {
                "the master bids for you up to this, unseen · m bid instead · Enter place"
            } else {
                "+/- step · digits type · m maximum · Enter place · Esc cancel"
            },
            Style::new().dim(),
        )),
        BidPhase::Placing => Line::from(Span::styled("placing…", Style::new().fg(Color::Yellow))),
        BidPhase::Refused(why) => Line::from(Span::styled(
            why.clone(),
            Style::new().fg(Color::Red).bold(),
        )),
    };
    lines.push(phase);
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .render(inner, buf);
}
