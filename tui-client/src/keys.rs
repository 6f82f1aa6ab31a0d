//! Key events to [`Action`]s, one map per [`Mode`].
//!
//! | Mode      | Keys |
//! |-----------|------|
//! | any       | Ctrl-C quit |
//! | dashboard | ↑/k ↓/j move (wrap), PgUp/PgDn, Home/g End/G, `/` filter, `s` sort, `f` floor, `b` bid, `?` help, Esc clear filter, `q` quit |
//! | floor     | `f`/Esc dashboard, `b` bid, `?` help, `q` quit |
//! | filter    | type, Backspace, Enter keep, Esc clear, ↑/↓ move |
//! | help      | any key closes, `q` quits |
//! | bid box   | `+`/↑ and `-`/↓ step, digits type whole units, Backspace, Enter place, Esc cancel |

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Action, Mode};

/// The action a key press means in `mode`, if any.
pub fn action_for(key: KeyEvent, mode: Mode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    match mode {
        Mode::Dashboard | Mode::Floor => screen(key.code),
        Mode::Filter => filter(key.code),
        Mode::Help => Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            _ => Action::Close,
        }),
        Mode::BidBox => bid_box(key.code),
    }
}

fn screen(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('f') => Action::ToggleFloor,
        KeyCode::Char('b') => Action::OpenBidBox,
        KeyCode::Char('l') => Action::CycleLane,
        KeyCode::Esc => Action::Close,
        _ => return None,
    })
}

fn filter(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Enter => Action::FilterDone,
        KeyCode::Esc => Action::Close,
        KeyCode::Backspace => Action::FilterBackspace,
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        KeyCode::Char(c) => Action::FilterInput(c),
        _ => return None,
    })
}

fn bid_box(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('+' | '=' | 'k') | KeyCode::Up => Action::BidUp,
        KeyCode::Char('-' | '_' | 'j') | KeyCode::Down => Action::BidDown,
        KeyCode::Char(c @ '0'..='9') => Action::BidDigit(c as u8 - b'0'),
        KeyCode::Backspace => Action::BidBackspace,
        KeyCode::Char('m') => Action::BidToggleMax,
        KeyCode::Enter => Action::PlaceBid,
        KeyCode::Esc | KeyCode::Char('q') => Action::Close,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn ctrl_c_quits_everywhere() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [
            Mode::Dashboard,
            Mode::Floor,
            Mode::Filter,
            Mode::Help,
            Mode::BidBox,
        ] {
            assert_eq!(action_for(ctrl_c, mode), Some(Action::Quit), "{mode:?}");
        }
    }

    #[test]
    fn letters_mean_different_things_per_mode() {
        assert_eq!(
            action_for(key(KeyCode::Char('s')), Mode::Dashboard),
            Some(Action::CycleSort)
        );
        assert_eq!(
            action_for(key(KeyCode::Char('s')), Mode::Filter),
            Some(Action::FilterInput('s'))
        );
        assert_eq!(
            action_for(key(KeyCode::Char('q')), Mode::Filter),
            Some(Action::FilterInput('q'))
        );
        assert_eq!(
            action_for(key(KeyCode::Char('q')), Mode::BidBox),
            Some(Action::Close)
        );
        assert_eq!(
            action_for(key(KeyCode::Char('7')), Mode::BidBox),
            Some(Action::BidDigit(7))
        );
        assert_eq!(
            action_for(key(KeyCode::Char('+')), Mode::BidBox),
            Some(Action::BidUp)
        );
        assert_eq!(
            action_for(key(KeyCode::Char('x')), Mode::Help),
            Some(Action::Close)
        );
        assert_eq!(action_for(key(KeyCode::Char('x')), Mode::Dashboard), None);
    }

    #[test]
    fn releases_are_ignored() {
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(release, Mode::Dashboard), None);
    }
}
