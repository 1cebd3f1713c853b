//! Bearer-token authentication: `authorization: Bearer <token>` → tenant.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use super::error::ServiceError;
use crate::config::{DEFAULT_TENANT, TenantConfig};

/// Maps tokens to tenants. Tokens are kept only as SHA-256 digests, and lookup is by digest, so
/// comparison time does not depend on how much of a guessed token is right.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: HashMap<[u8; 32], String>,
}

impl Auth {
    /// From the configured tenants; with none, every caller is the `default` tenant.
    pub fn new(tenants: &[TenantConfig]) -> Self {
        let tokens = tenants
            .iter()
            .flat_map(|t| {
                t.tokens
                    .iter()
                    .map(move |tok| (digest(tok), t.name.clone()))
            })
            .collect();
        Self { tokens }
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The caller's tenant.
    pub fn tenant(&self, metadata: &MetadataMap) -> Result<String, ServiceError> {
        if !self.enabled() {
            return Ok(DEFAULT_TENANT.to_string());
        }
        let value = metadata
            .get("authorization")
            .ok_or(ServiceError::Unauthenticated(
                "missing authorization metadata (Bearer token)",
            ))?;
        let text = value
            .to_str()
            .map_err(|_| ServiceError::Unauthenticated("malformed authorization metadata"))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or(ServiceError::Unauthenticated(
                "authorization must be \"Bearer <token>\"",
            ))?
            .trim();
        self.tokens
            .get(&digest(token))
            .cloned()
            .ok_or(ServiceError::Unauthenticated("invalid token"))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn maps_tokens() {
        let auth = Auth::new(&[TenantConfig {
            name: "bank".into(),
            tokens: vec!["abc".into()],
        }]);
        let mut md = MetadataMap::new();
        assert!(auth.tenant(&md).is_err());
        md.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(auth.tenant(&md).unwrap(), "bank");
        md.insert("authorization", "Bearer abd".parse().unwrap());
        assert!(auth.tenant(&md).is_err());
        md.insert("authorization", "abc".parse().unwrap());
        assert!(auth.tenant(&md).is_err());
        assert_eq!(
            Auth::new(&[]).tenant(&MetadataMap::new()).unwrap(),
            "default"
        );
    }
}
