//! The floor display: one lot for a wall screen — its price in big digits, the
//! countdown, the leader and the last bids. It follows the open lot closing soonest
//! unless a lot is pinned with `--lot`.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use lotsync::protocol::{Lot, LotStatus};

use super::dashboard::{block, status_style};
use super::digits;
use crate::app::App;
use crate::format::{self, truncate};

/// Draw the floor display.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(lot) = app.floor_lot() else {
        let title = match &app.options.pinned {
            Some(id) => format!(" Floor · {id} "),
            None => " Floor ".to_owned(),
        };
        let block = block(app, title);
        let inner = block.inner(area);
        block.render(area, buf);
        let text = match &app.options.pinned {
            Some(id) => format!("Lot {id} is not in the auction (yet)"),
            None => "No lots yet".to_owned(),
        };
        Paragraph::new(truncate(&text, inner.width as usize))
            .dim()
            .render(inner, buf);
        return;
    };
    let pin = match (&app.options.pinned, &app.options.lane) {
        (Some(_), _) => "pinned".to_owned(),
        (None, Some(lane)) => format!("lane {lane}"),
        (None, None) => "closing soonest".to_owned(),
    };
    let title = format!(" Floor · {} · {pin} ", lot.id);
    let block = block(
        app,
        truncate(&title, area.width.saturating_sub(10) as usize),
    );
    let inner = block.inner(area);
    block.render(area, buf);
    Paragraph::new(lines(app, lot, inner))
        .alignment(Alignment::Center)
        .render(inner, buf);
}

fn lines(app: &App, lot: &Lot, area: Rect) -> Vec<Line<'static>> {
    let width = area.width as usize;
    let height = area.height as usize;
    let fit = |text: String| truncate(&text, width);
    let money = |amount| format::money(&lot.currency, amount);
    let mut lines = vec![
        Line::from(Span::styled(fit(lot.title.clone()), Style::new().bold())),
        Line::from(Span::styled(
            fit(format!("{} · {}", lot.status, bids(lot.bid_count))),
            status_style(lot.status),
        )),
    ];

    let price = format::whole(&lot.currency, lot.current_price);
    let price_style = if app.is_flashing(&lot.id) {
        Style::new().fg(Color::Yellow).bold()
    } else {
        Style::new().fg(Color::Green).bold()
    };
    // Big digits need their rows plus about eight lines of text around them; a wall
    // display with room to keep a few last bids too gets them at double size.
    let big_width = digits::width(&price);
    let rows = if big_width * 2 <= width && height >= digits::HEIGHT * 2 + 12 {
        Some(digits::render_double(&price))
    } else if big_width <= width && height >= digits::HEIGHT + 8 {
        Some(digits::render(&price).to_vec())
    } else {
        None
    };
    if let Some(rows) = rows {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            lot.currency.clone(),
            Style::new().dim(),
        )));
        lines.extend(
            rows.into_iter()
                .map(|row| Line::from(Span::styled(row, price_style))),
        );
    } else {
        lines.push(Line::from(Span::styled(
            fit(money(lot.current_price)),
            price_style,
        )));
    }

    lines.push(Line::default());
    let countdown = match lot.status {
        LotStatus::Open => format!("closes in {}", format::time_left(lot, app.now)),
        LotStatus::Scheduled => format!("opens {}", format::time_left(lot, app.now)),
        status => format!("bidding {status}"),
    };
    let urgent = lot.status == LotStatus::Open && (lot.ends_at - app.now).num_seconds() < 30;
    let countdown_style = if urgent {
        Style::new().fg(Color::Red).bold()
    } else {
        Style::new().bold()
    };
    lines.push(Line::from(Span::styled(fit(countdown), countdown_style)));
    let leader = match &lot.leading_bidder {
        Some(who) => format!("leading: {who}"),
        None => format!("no bids yet · opening at {}", money(lot.starting_price)),
    };
    lines.push(Line::from(fit(leader)));
    match lot.reserve_met {
        Some(true) => lines.push(Line::from(Span::styled(
            fit("reserve met".to_owned()),
            Style::new().fg(Color::Green).bold(),
        ))),
        Some(false) => lines.push(Line::from(Span::styled(
            fit("reserve not met".to_owned()),
            Style::new().dim(),
        ))),
        None => {}
    }
    if lot.status == LotStatus::Open && lot.bid_count > 0 {
        lines.push(Line::from(Span::styled(
            fit(format!("next bid {}", money(lot.min_next_bid()))),
            Style::new().dim(),
        )));
    }

    let room = height.saturating_sub(lines.len() + 2);
    if room > 0 && !lot.recent_bids.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled("last bids", Style::new().dim())));
        for bid in lot.recent_bids.iter().take(room.min(5)) {
            let text = format!(
                "{}  {}  {}",
                bid.at.format("%H:%M:%S"),
                bid.bidder,
                money(bid.amount)
            );
            lines.push(Line::from(fit(text)));
        }
    }
    lines
}

/// "1 bid", "7 bids".
pub fn bids(count: u32) -> String {
    if count == 1 {
        "1 bid".to_owned()
    } else {
        format!("{count} bids")
    }
}
