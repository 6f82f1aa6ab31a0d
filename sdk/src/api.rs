//! Requests to the master's HTTP API: snapshot, batch fetch, change log and bids.
//!
//! Every response is checked before it is trusted: status, content type, size and
//! shape. An HTML error page served with status 200 is a malformed response, not data.

use serde::de::DeserializeOwned;

use crate::error::{BidError, FetchError};
use crate::options::Options;
use crate::protocol::{
    BidReceipt, BidRequest, ChangesResponse, ErrorBody, IDEMPOTENCY_KEY_HEADER, LotStatus,
    LotsResponse, MaxStatus, Seq, codes,
};

/// Most change-log entries asked for per catch-up request.
pub(crate) const CHANGES_PAGE: usize = 1000;

#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    bidder_token: Option<String>,
    max_response_bytes: usize,
    bid_retries: u32,
    inline_lots: bool,
}

impl Api {
    pub fn new(http: reqwest::Client, options: &Options) -> Self {
        Api {
            http,
            base: options.base_url.clone(),
            token: options.token.clone(),
            bidder_token: options.bidder_token.clone(),
            max_response_bytes: options.max_response_bytes,
            bid_retries: options.bid_retries,
            inline_lots: options.inline_lots,
        }
    }

    pub fn notices_url(&self, epoch: Option<&str>) -> String {
        let mut url = format!("{}/v1/notices", self.base);
        let mut sep = '?';
        if let Some(epoch) = epoch {
            url.push_str(&format!("{sep}epoch={epoch}"));
            sep = '&';
        }
        if self.inline_lots {
            url.push_str(&format!("{sep}lots=inline"));
        }
        url
    }

    pub fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    fn get(&self, url: String) -> reqwest::RequestBuilder {
        let request = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Every lot, consistent as of the returned sequence.
    pub async fn snapshot(&self) -> Result<LotsResponse, FetchError> {
        let response = self.get(format!("{}/v1/lots", self.base)).send().await?;
        self.json(response).await
    }

    /// The given lots at version `min_seq` or later.
    pub async fn fetch_lots(
        &self,
        ids: &[String],
        min_seq: Seq,
    ) -> Result<LotsResponse, FetchError> {
        let url = format!(
            "{}/v1/lots?ids={}&min_seq={min_seq}",
            self.base,
            ids.join(",")
        );
        let response = self.get(url).send().await?;
        self.json(response).await
    }

    /// Change-log entries after `after`.
    pub async fn changes(&self, after: Seq) -> Result<ChangesResponse, FetchError> {
        let url = format!(
            "{}/v1/changes?after={after}&limit={CHANGES_PAGE}",
            self.base
        );
        let response = self.get(url).send().await?;
        self.json(response).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, FetchError> {
        let status = response.status();
        match status.as_u16() {
            200 => {}
            503 => return Err(FetchError::ReplicaBehind),
            410 => return Err(FetchError::HistoryTruncated),
            other => return Err(FetchError::Status(other)),
        }
        let is_json = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(FetchError::Malformed(
                "content type is not application/json".into(),
            ));
        }
        let body = read_capped(response, self.max_response_bytes).await?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Malformed(e.to_string()))
    }

    fn bidder(&self, lot_id: &str) -> Result<&str, BidError> {
        let token = self
            .bidder_token
            .as_deref()
            .ok_or_else(|| BidError::Unauthorized("no bidder token configured".into()))?;
        crate::protocol::validate_lot_id(lot_id).map_err(|e| BidError::Invalid {
            field: "lot_id".into(),
            message: e.message,
        })?;
        Ok(token)
    }

    /// The bidder's own maximum on a lot and where they stand.
    pub async fn max_status(&self, lot_id: &str) -> Result<MaxStatus, BidError> {
        let token = self.bidder(lot_id)?;
        let url = format!("{}/v1/lots/{lot_id}/max", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| BidError::Network(e.to_string()))?;
        let status = response.status().as_u16();
        let body = read_capped(response, 1 << 20)
            .await
            .map_err(|e| BidError::Network(e.to_string()))?;
        interpret_response(status, &body)
    }

    /// Place a bid and/or a maximum; retried with the same idempotency key on network
    /// errors and 5xx, so a bid whose answer was lost is not placed twice.
    pub async fn place_bid(
        &self,
        lot_id: &str,
        request: BidRequest,
    ) -> Result<BidReceipt, BidError> {
        let token = self.bidder(lot_id)?;
        request.validate().map_err(|e| BidError::Invalid {
            field: e.field,
            message: e.message,
        })?;
        let key = idempotency_key();
        let url = format!("{}/v1/lots/{lot_id}/bids", self.base);
        let mut last_error = String::new();
        for attempt in 0..=self.bid_retries {
            if attempt > 0 {
                tokio::time::sleep(crate::backoff::jittered(
                    attempt - 1,
                    std::time::Duration::from_millis(100),
                    std::time::Duration::from_secs(2),
                ))
                .await;
            }
            let sent = self
                .http
                .post(&url)
                .bearer_auth(token)
                .header(IDEMPOTENCY_KEY_HEADER, &key)
                .json(&request)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status >= 500 {
                last_error = format!("HTTP {status}");
                continue;
            }
            let body = read_capped(response, 1 << 20)
                .await
                .map_err(|e| BidError::Network(e.to_string()))?;
            return interpret_response(status, &body);
        }
        Err(BidError::Network(last_error))
    }
}

fn interpret_response<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, BidError> {
    if status == 201 || status == 200 {
        return serde_json::from_slice(body).map_err(|e| BidError::Server {
            status,
            message: format!("malformed answer: {e}"),
        });
    }
    let error = serde_json::from_slice::<ErrorBody>(body).map(|b| b.error);
    let Ok(error) = error else {
        return Err(BidError::Server {
            status,
            message: "error without a JSON body".into(),
        });
    };
    Err(match (status, error.code.as_str()) {
        (401 | 403, _) => BidError::Unauthorized(error.message),
        (404, _) => BidError::UnknownLot,
        (_, codes::BID_TOO_LOW) if error.field.as_deref() == Some("max_amount") => {
            BidError::MaxTooLow {
                min: error.min_next_bid.unwrap_or_default(),
            }
        }
        (_, codes::BID_TOO_LOW) => BidError::TooLow {
            min_next_bid: error.min_next_bid.unwrap_or_default(),
        },
        (_, codes::LOT_NOT_OPEN) => BidError::NotOpen {
            status: error.status.unwrap_or(LotStatus::Closed),
        },
        (400 | 422, _) => BidError::Invalid {
            field: error.field.unwrap_or_default(),
            message: error.message,
        },
        _ => BidError::Server {
            status,
            message: error.message,
        },
    })
}

/// A fresh random key per bid attempt (the user's action), reused across its retries.
fn idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bid_errors_are_typed() {
        let too_low = br#"{"error":{"code":"bid_too_low","message":"m","field":"amount","min_next_bid":1050}}"#;
        assert!(matches!(
            interpret_response::<BidReceipt>(409, too_low),
            Err(BidError::TooLow { min_next_bid: 1050 })
        ));
        let closed = br#"{"error":{"code":"lot_not_open","message":"m","status":"sold"}}"#;
        assert!(matches!(
            interpret_response::<BidReceipt>(409, closed),
            Err(BidError::NotOpen {
                status: LotStatus::Sold
            })
        ));
        let unknown = br#"{"error":{"code":"not_found","message":"m"}}"#;
        assert!(matches!(
            interpret_response::<BidReceipt>(404, unknown),
            Err(BidError::UnknownLot)
        ));
        let forbidden = br#"{"error":{"code":"forbidden","message":"terminals cannot bid"}}"#;
        assert!(matches!(
            interpret_response::<BidReceipt>(403, forbidden),
            Err(BidError::Unauthorized(_))
        ));
        let max = br#"{"error":{"code":"bid_too_low","message":"m","field":"max_amount","min_next_bid":900}}"#;
        assert!(matches!(
            interpret_response::<BidReceipt>(409, max),
            Err(BidError::MaxTooLow { min: 900 })
        ));
        assert!(matches!(
            interpret_response::<BidReceipt>(400, b"<html>oops</html>"),
            Err(BidError::Server { status: 400, .. })
        ));
    }

    #[test]
    fn keys_are_unique() {
        assert_ne!(idempotency_key(), idempotency_key());
        assert_eq!(idempotency_key().len(), 32);
    }
}
