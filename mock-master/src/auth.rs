//! Bearer-token roles and the extractors that enforce them.
//!
//! A request without a known token gets 401; a known token of the wrong role gets 403.
//! Either way the handler never runs, so nothing changes. Tokens are never logged.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

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

/// Token → role.
pub struct Tokens(HashMap<String, Role>);

impl Tokens {
    /// The tokens of a configuration.
    pub fn from_config(config: &MasterConfig) -> Tokens {
        let mut map = HashMap::new();
        map.insert(config.admin_token.clone(), Role::Admin);
        map.insert(config.terminal_token.clone(), Role::Terminal);
        for (name, token) in &config.bidders {
            map.insert(token.clone(), Role::Bidder(name.clone()));
        }
        Tokens(map)
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
                .0
                .get(token)
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
