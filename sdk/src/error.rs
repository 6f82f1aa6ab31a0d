//! Typed errors of the public API.

use crate::protocol::{LotStatus, Money};

/// The client could not be built from its options.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The master URL is not an absolute `http://` or `https://` URL.
    #[error("invalid master url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option has a value that cannot work.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A token contains characters an HTTP header cannot carry.
    #[error("the {which} token is not a valid header value")]
    InvalidToken {
        /// Which token.
        which: &'static str,
    },
    /// The HTTP client could not be created (TLS set-up). The HTTP library's message,
    /// as text: the public API does not expose its error type.
    #[error("could not create the HTTP client: {0}")]
    Http(String),
    /// `build` was called outside a tokio runtime.
    #[error("Client::build must be called inside a tokio runtime")]
    NoRuntime,
}

impl BuildError {
    /// The HTTP library could not build a client.
    pub(crate) fn http(e: reqwest::Error) -> Self {
        BuildError::Http(e.to_string())
    }
}

/// Why a bid was not placed.
///
/// ```
/// use lotsync::BidError;
/// let err = BidError::TooLow { min_next_bid: 1_050_00 };
/// assert_eq!(err.to_string(), "bid too low: the next bid must be at least 105000");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum BidError {
    /// The amount is below the lot's minimum next bid.
    #[error("bid too low: the next bid must be at least {min_next_bid}")]
    TooLow {
        /// The smallest acceptable amount at the time of the bid.
        min_next_bid: Money,
    },
    /// The maximum is below what it may be now: the minimum next bid, or, for the
    /// leader lowering theirs, the amount they lead with.
    #[error("maximum too low: it must be at least {min}")]
    MaxTooLow {
        /// The smallest maximum accepted now.
        min: Money,
    },
    /// The lot is not open for bids.
    #[error("the lot is {status}, not open for bids")]
    NotOpen {
        /// Its status.
        status: LotStatus,
    },
    /// No such lot.
    #[error("no such lot")]
    UnknownLot,
    /// No bidder token configured, or the master refused it.
    #[error("not authorised to bid: {0}")]
    Unauthorized(String),
    /// The master rejected the request as invalid.
    #[error("invalid bid ({field}): {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// The master's explanation.
        message: String,
    },
    /// The master could not be reached or kept failing; the bid may or may not have been
    /// placed, and retrying with the same key is safe.
    #[error("network error: {0}")]
    Network(String),
    /// The master answered something unexpected.
    #[error("unexpected answer from the master (HTTP {status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Details.
        message: String,
    },
}

/// Why a fetch did not produce usable lots (internal; counted in metrics).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("network: {0}")]
    Network(#[from] reqwest::Error),
    #[error("replica behind (503)")]
    ReplicaBehind,
    #[error("history truncated (410)")]
    HistoryTruncated,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("response too large")]
    TooLarge,
}
