//! Fetching a member's resources over its REST API.

use std::collections::BTreeMap;

use crate::model::FetchError;
use crate::node_name::NodeName;

/// Knows how to reach each remote member.
#[derive(Debug, Default)]
pub struct RemoteFetcher {
    urls: BTreeMap<NodeName, String>,
}

impl RemoteFetcher {
    pub fn new(urls: BTreeMap<NodeName, String>) -> Self {
        RemoteFetcher { urls }
    }

    pub async fn fetch(&self, node: &NodeName) -> Result<String, FetchError> {
        match self.urls.get(node) {
            None => Err(FetchError::Unreachable(format!(
                "{node} has no address in the cluster configuration"
            ))),
            Some(url) => Err(FetchError::Unreachable(format!(
                "{node} ({url}): remote fetch is not available yet"
            ))),
        }
    }
}
