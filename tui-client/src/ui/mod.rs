//! Rendering. Every function here only reads the [`App`]; `Widget for &App` draws a
//! whole frame without cloning state.
//!
//! Regions: [`header`] (connection, sequence, rates), the body ([`dashboard`] or
//! [`floor`]), [`footer`] (status line and keys), and the overlays [`help`] and
//! [`bidbox`]. Every region copes with any size down to a few cells: text is cut
//! with `…`, optional parts are left out when they do not fit.

pub mod bidbox;
pub mod dashboard;
pub mod digits;
pub mod floor;
pub mod footer;
pub mod header;
pub mod help;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::Widget;

use crate::app::{App, Overlay, Screen};

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(2),
        ])
        .areas(area);
        header::render(self, top, buf);
        match self.screen {
            Screen::Dashboard => dashboard::render(self, body, buf),
            Screen::Floor => floor::render(self, body, buf),
        }
        footer::render(self, bottom, buf);
        match &self.overlay {
            Overlay::Help => help::render(self, area, buf),
            Overlay::Bid(_) => bidbox::render(self, area, buf),
            Overlay::None | Overlay::Filter => {}
        }
    }
}

/// A `width` x `height` rectangle centred in `area`, shrunk to fit.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
