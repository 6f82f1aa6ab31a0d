//! Bearer-token roles and the extractors that enforce them.
//!
//! A request without a known token gets 401; a known token of the wrong role gets 403.
//! Either way the handler never runs, so nothing changes. Tokens are never logged; they
//! are kept as digests and compared in constant time, every one of them, so the time an
//! answer takes tells nothing about the tokens.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use lotsync::serve::Secret;

use crate::config::MasterConfig;
use crate::http::errors::ApiError;
use crate::server::AppState;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Creates and replaces lots, changes status, drives fault injection; may also read.
    Admin,
    /// Places bids as this bidder.
    Bidder(String),
    /// Reads notices and lots.
    Terminal,
}

/// Token digests and their roles.
pub struct Tokens {
    roles: Vec<(Secret, Role)>,
    /// Required by `/metrics` when set (the admin token works too).
    metrics: Option<Secret>,
}

impl Tokens {
    /// The tokens of a configuration. A token given to two roles keeps the first
    /// (admin, then terminal, then bidders in order).
    pub fn from_config(config: &MasterConfig) -> Tokens {
        let mut roles = vec![
            (Secret::new(&config.admin_token), Role::Admin),
            (Secret::new(&config.terminal_token), Role::Terminal),
        ];
        for (name, token) in &config.bidders {
            roles.push((Secret::new(token), Role::Bidder(name.clone())));
        }
        Tokens {
            roles,
            metrics: config.metrics_token.as_deref().map(Secret::new),
        }
    }

    /// Whether the request may read `/metrics`: always when no metrics token is set,
    /// else with the metrics token or the admin token.
    pub fn may_scrape(&self, parts: &Parts) -> Result<(), ApiError> {
        let Some(required) = &self.metrics else {
            return Ok(());
        };
        let token = lotsync::serve::bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let admin = matches!(self.lookup(token), Some(Role::Admin));
        if required.matches(token) | admin {
            Ok(())
        } else {
            Err(ApiError::unauthorized("this needs the metrics token"))
        }
    }

    /// The role of `token`, comparing it with every known token.
    fn lookup(&self, token: &str) -> Option<&Role> {
        let candidate = Secret::new(token);
        self.roles.iter().fold(None, |found, (secret, role)| {
            let hit = *secret == candidate;
            found.or(hit.then_some(role))
        })
    }

    /// Whether the request may read notices and lots (terminal or admin token).
    pub fn may_read(&self, parts: &Parts) -> Result<(), ApiError> {
        match self.role(parts)? {
            Role::Terminal | Role::Admin => Ok(()),
            Role::Bidder(_) => Err(ApiError::forbidden("this needs the terminal token")),
        }
    }

    /// The role of the request's bearer token; 401 when missing or unknown.
    fn role(&self, parts: &Parts) -> Result<&Role, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        match token {
            None => Err(ApiError::unauthorized("missing bearer token")),
            Some(token) => self
                .lookup(token)
                .ok_or_else(|| ApiError::unauthorized("unknown token")),
        }
    }
}

/// The request carries the admin token.
#[derive(Debug)]
pub struct AdminAuth;

/// The request carries a bidder's token; holds the bidder's name.
#[derive(Debug)]
pub struct BidderAuth(pub String);

/// The request may read notices and lots (terminal or admin token).
#[derive(Debug)]
pub struct TerminalAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.tokens.role(parts)? {
            Role::Admin => Ok(AdminAuth),
            _ => Err(ApiError::forbidden("this needs the admin token")),
        }
    }
}

impl FromRequestParts<AppState> for BidderAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.tokens.role(parts)? {
            Role::Bidder(name) => Ok(BidderAuth(name.clone())),
            _ => Err(ApiError::forbidden("this needs a bidder token")),
        }
    }
}

impl FromRequestParts<AppState> for TerminalAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.tokens.may_read(parts).map(|()| TerminalAuth)
    }
}

/// The request may read `/metrics` (see [`Tokens::may_scrape`]).
#[derive(Debug)]
pub struct MetricsAuth;

impl FromRequestParts<AppState> for MetricsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.tokens.may_scrape(parts).map(|()| MetricsAuth)
    }
}
