//! The dashboard: a table of lots and a detail pane for the selected one.
//!
//! Columns that do not fit are dropped in order of importance (leader, bids, lane,
//! reserve, status, time left, price); lane, reserve and "you" (leading or outbid on the
//! bidder's own lots) appear only when some lot has them; the title column takes what
//! is left and is cut with `…`. The
//! detail pane sits to the right on wide terminals, below on tall ones, and is left
//! out on small ones.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Borders, Cell, Paragraph, Row, Sparkline, StatefulWidget, Table, TableState,
    Widget,
};

use lotsync::protocol::{Lot, LotStatus};

use crate::app::{App, Standing};
use crate::format::{self, truncate};

/// Narrowest title column before other columns are dropped to make room.
const MIN_TITLE: u16 = 12;

/// Draw the dashboard body.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.width >= 100 {
        let [table, detail] =
            Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas::<2>(area);
        render_table(app, table, buf);
        render_detail(app, detail, buf);
    } else if area.height >= 24 {
        let [table, detail] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(12)]).areas::<2>(area);
        render_table(app, table, buf);
        render_detail(app, detail, buf);
    } else {
        render_table(app, area, buf);
    }
}

/// Style of a status word.
pub fn status_style(status: LotStatus) -> Style {
    match status {
        LotStatus::Open => Style::new().fg(Color::Green),
        LotStatus::Scheduled => Style::new().fg(Color::Cyan),
        LotStatus::Closed => Style::new().fg(Color::Yellow),
        LotStatus::Sold => Style::new().fg(Color::Magenta),
        LotStatus::Passed | LotStatus::Withdrawn => Style::new().fg(Color::DarkGray),
    }
}

/// A bordered block, red and badged when the data may be old.
pub fn block<'a>(app: &App, title: String) -> Block<'a> {
    let mut block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .title(Span::styled(title, Style::new().bold()));
    if !app.link.is_live() {
        block = block
            .border_style(Style::new().fg(Color::Red))
            .title(Span::styled(
                " STALE ",
                Style::new().fg(Color::White).bg(Color::Red).bold(),
            ));
    }
    block
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Title,
    Price,
    Bids,
    Leader,
    Status,
    Left,
    Lane,
    Reserve,
    Mine,
}

fn render_table(app: &App, area: Rect, buf: &mut Buffer) {
    let visible = app.visible();
    let title = format!(" Lots ({}/{}) ", visible.len(), app.lots.len());
    let block = block(app, title);
    let inner = block.inner(area);
    block.render(area, buf);
    if visible.is_empty() {
        let text = if app.lots.is_empty() {
            "Waiting for lots from the master…".to_owned()
        } else {
            format!("No lots match \"{}\" (Esc clears the filter)", app.filter)
        };
        Paragraph::new(truncate(&text, inner.width as usize))
            .dim()
            .render(inner, buf);
        return;
    }

    let price_width = visible
        .iter()
        .map(|lot| {
            format::money(&lot.currency, lot.current_price)
                .chars()
                .count()
        })
        .max()
        .unwrap_or(5)
        .max(5) as u16;
    let id_width = visible
        .iter()
        .map(|lot| lot.id.chars().count())
        .max()
        .unwrap_or(2)
        .clamp(2, 12) as u16;
    let mut columns: Vec<(Column, u16)> = vec![(Column::Id, id_width)];
    // Lane, reserve and the bidder's own standing only when some lot has them.
    if visible.iter().any(|lot| lot.lane.is_some()) {
        columns.push((Column::Lane, 4));
    }
    columns.extend([
        (Column::Title, 0),
        (Column::Price, price_width),
        (Column::Bids, 4),
        (Column::Leader, 10),
        (Column::Status, 9),
        (Column::Left, 10),
    ]);
    if visible.iter().any(|lot| lot.reserve_met.is_some()) {
        columns.push((Column::Reserve, 7));
    }
    if visible.iter().any(|lot| app.standing(lot).is_some()) {
        columns.push((Column::Mine, 7));
    }
    // Highlight symbol (2) plus one space between columns.
    let available = inner.width.saturating_sub(2);
    for drop in [
        Column::Leader,
        Column::Bids,
        Column::Lane,
        Column::Reserve,
        Column::Status,
        Column::Left,
        Column::Price,
    ] {
        let fixed: u16 = columns.iter().map(|(_, w)| w + 1).sum();
        if available.saturating_sub(fixed) >= MIN_TITLE {
            break;
        }
        columns.retain(|(c, _)| *c != drop);
    }
    let fixed: u16 = columns.iter().map(|(_, w)| w + 1).sum();
    let title_width = available.saturating_sub(fixed).max(1);
    for (column, width) in &mut columns {
        if *column == Column::Title {
            *width = title_width;
        }
    }

    let header = Row::new(columns.iter().map(|(column, width)| {
        let name = match column {
            Column::Id => "Lot",
            Column::Title => "Car",
            Column::Price => "Price",
            Column::Bids => "Bids",
            Column::Leader => "Leader",
            Column::Status => "Status",
            Column::Left => "Left",
            Column::Lane => "Lane",
            Column::Reserve => "Reserve",
            Column::Mine => "You",
        };
        let right = matches!(column, Column::Price | Column::Bids | Column::Left);
        cell(name, *width, right)
    }))
    .style(Style::new().bold().underlined());

    let stale = !app.link.is_live();
    let rows = visible.iter().map(|lot| {
        let cells = columns.iter().map(|(column, width)| {
            let w = *width;
            match column {
                Column::Id => cell(&lot.id, w, false),
                Column::Title => cell(&lot.title, w, false),
                Column::Price => cell(&format::money(&lot.currency, lot.current_price), w, true),
                Column::Bids => cell(&lot.bid_count.to_string(), w, true),
                Column::Leader => cell(lot.leading_bidder.as_deref().unwrap_or("—"), w, false),
                Column::Status => {
                    cell(lot.status.as_str(), w, false).style(status_style(lot.status))
                }
                Column::Left => cell(&format::time_left(lot, app.now), w, true),
                Column::Lane => cell(lot.lane.as_deref().unwrap_or(""), w, false),
                Column::Reserve => match lot.reserve_met {
                    Some(true) => cell("met", w, false).style(Style::new().fg(Color::Green)),
                    Some(false) => cell("not met", w, false).style(Style::new().dim()),
                    None => cell("", w, false),
                },
                Column::Mine => match app.standing(lot) {
                    Some(Standing::Leading) => {
                        cell("leading", w, false).style(Style::new().fg(Color::Green).bold())
                    }
                    Some(Standing::Outbid) => {
                        cell("outbid", w, false).style(Style::new().fg(Color::Red).bold())
                    }
                    None => cell("", w, false),
                },
            }
        });
        let mut style = Style::new();
        if app.is_flashing(&lot.id) {
            style = style.fg(Color::Black).bg(Color::Yellow);
        }
        if stale || lot.status.is_final() {
            style = style.add_modifier(Modifier::DIM);
        }
        Row::new(cells).style(style)
    });

    let widths: Vec<Constraint> = columns
        .iter()
        .map(|(_, w)| Constraint::Length(*w))
        .collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .highlight_symbol("▶ ")
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD));
    let selected = app.selected_index(&visible).unwrap_or(0);
    let rows_shown = inner.height.saturating_sub(1).max(1) as usize;
    let offset = (selected + 1).saturating_sub(rows_shown);
    let mut state = TableState::new()
        .with_selected(Some(selected))
        .with_offset(offset);
    StatefulWidget::render(table, inner, buf, &mut state);
}

fn cell(text: &str, width: u16, right: bool) -> Cell<'static> {
    let line = Line::from(truncate(text, width as usize));
    Cell::from(Text::from(if right {
        line.alignment(Alignment::Right)
    } else {
        line
    }))
}

fn render_detail(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(lot) = app.selected_lot() else {
        block(app, " Detail ".to_owned()).render(area, buf);
        return;
    };
    let block = block(
        app,
        format!(
            " {} ",
            truncate(&lot.id, area.width.saturating_sub(12) as usize)
        ),
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let spark_height = if inner.height >= 14 { 4 } else { 0 };
    let [text_area, spark_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(spark_height)]).areas::<2>(inner);
    Paragraph::new(detail_lines(app, lot, inner.width as usize)).render(text_area, buf);
    if spark_height > 0 {
        render_sparkline(app, lot, spark_area, buf);
    }
}

fn detail_lines(app: &App, lot: &Lot, width: usize) -> Vec<Line<'static>> {
    let fit = |text: String| truncate(&text, width);
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<9}"), Style::new().dim()),
            Span::raw(value),
        ])
    };
    let value_width = width.saturating_sub(9);
    let money = |amount| format::money(&lot.currency, amount);
    let mut lines = vec![
        Line::from(Span::styled(fit(lot.title.clone()), Style::new().bold())),
        field("Status", lot.status.to_string()).patch_style(status_style(lot.status)),
        field(
            "Price",
            truncate(
                &format!(
                    "{} ({})",
                    money(lot.current_price),
                    super::floor::bids(lot.bid_count)
                ),
                value_width,
            ),
        ),
    ];
    if lot.status == LotStatus::Open {
        lines.push(field(
            "Next",
            truncate(
                &format!("{} (+{})", money(lot.min_next_bid()), money(lot.increment)),
                value_width,
            ),
        ));
    }
    lines.push(field(
        "Leader",
        truncate(lot.leading_bidder.as_deref().unwrap_or("—"), value_width),
    ));
    let reserve = match lot.reserve_met {
        None => "none",
        Some(true) => "met",
        Some(false) => "not met",
    };
    lines.push(field("Reserve", reserve.to_owned()));
    if let Some(lane) = &lot.lane {
        let place = lot
            .run_order
            .map(|n| format!(" · #{n}"))
            .unwrap_or_default();
        lines.push(field("Lane", format!("{lane}{place}")));
    }
    if let Some(standing) = app.standing(lot) {
        let max = app
            .mine
            .get(&lot.id)
            .and_then(|m| m.max_amount)
            .map(|m| format!(" · your max {}", money(m)))
            .unwrap_or_default();
        let word = match standing {
            Standing::Leading => "leading",
            Standing::Outbid => "outbid",
        };
        lines.push(field("You", truncate(&format!("{word}{max}"), value_width)));
    }
    lines.push(field("Left", format::time_left(lot, app.now)));
    if !lot.attributes.is_empty() {
        lines.push(Line::default());
        for (key, value) in &lot.attributes {
            let label = truncate(&format::label(key), 11);
            let text = truncate(
                &format::attribute_display(key, value),
                width.saturating_sub(12),
            );
            lines.push(Line::from(vec![
                Span::styled(format!("{label:<12}"), Style::new().dim()),
                Span::raw(text),
            ]));
        }
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Recent bids", Style::new().bold())));
    if lot.recent_bids.is_empty() {
        lines.push(Line::from(Span::styled("none yet", Style::new().dim())));
    }
    for bid in &lot.recent_bids {
        let text = format!(
            "{}  {:<10} {}",
            bid.at.format("%H:%M:%S"),
            truncate(&bid.bidder, 10),
            money(bid.amount)
        );
        lines.push(Line::from(fit(text)));
    }
    lines
}

fn render_sparkline(app: &App, lot: &Lot, area: Rect, buf: &mut Buffer) {
    let prices: Vec<i64> = app
        .history
        .get(&lot.id)
        .map(|h| h.iter().copied().collect())
        .unwrap_or_default();
    let low = prices.iter().copied().min().unwrap_or(0);
    let high = prices.iter().copied().max().unwrap_or(0);
    // Relative to the lowest price (plus one step) so small rises are visible; a
    // price that never moved is a low flat line, not a full-height bar.
    let data: Vec<u64> = prices.iter().map(|p| (p - low) as u64 + 1).collect();
    let max = if high > low {
        (high - low) as u64 + 1
    } else {
        8
    };
    let width = area.width as usize;
    let data = &data[data.len().saturating_sub(width)..];
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(" price ", Style::new().dim()));
    Sparkline::default()
        .block(block)
        .data(data)
        .max(max)
        .style(Style::new().fg(Color::Green))
        .render(area, buf);
}
