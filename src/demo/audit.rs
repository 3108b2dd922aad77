//! The simulator's audit records (SPEC §15.4): every change it makes — a write through anyone,
//! an order's provisioning finishing, a change "in the portal" — becomes a record, served at
//! `GET /v1/auditrecords?startDate=…` in pages of [`PAGE`] with a continuation token, in the
//! shape of Partner Center's, so the gateway's audit follower can be watched end to end.

use std::time::SystemTime;

use serde_json::{json, Value};

/// Records per page: small, so that a follower must page.
pub(crate) const PAGE: usize = 2;

/// The continuation header of the next page.
pub(crate) const CONTINUATION: &str = "ms-continuationtoken";

/// Every change so far, in order.
#[derive(Default)]
pub(crate) struct AuditLog {
    records: Vec<(SystemTime, Value)>,
}

impl AuditLog {
    /// Records a change to a `resource_type` (`order`, `subscription`, `customer`) of
    /// `customer`, whose new state is `new_value`.
    pub(crate) fn record(&mut self, customer: &str, resource_type: &str, new_value: &Value) {
        let at = SystemTime::now();
        let number = self.records.len() + 1;
        let record = json!({
            "id": format!("audit-{number:06}"),
            "partnerId": "3b33e682-00c3-41ee-9dd2-a548adf56438",
            "customerId": customer,
            "resourceType": resource_type,
            "resourceNewValue": new_value.to_string(),
            "operationType": format!("update_{resource_type}"),
            "operationStatus": "succeeded",
            "operationDate": humantime::format_rfc3339_millis(at).to_string(),
            "attributes": {"objectType": "AuditRecord"},
        });
        self.records.push((at, record));
    }

    /// The page of records at or after `start`, beginning at `seek`, with the link to the next.
    pub(crate) fn page(&self, start: SystemTime, seek: usize, start_text: &str) -> Value {
        let matching: Vec<&Value> = self
            .records
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(_, record)| record)
            .collect();
        let items: Vec<&Value> = matching.iter().skip(seek).take(PAGE).copied().collect();
        let mut page = json!({
            "totalCount": items.len(),
            "items": items,
            "attributes": {"objectType": "Collection"},
        });
        if seek + PAGE < matching.len() {
            let next = seek + PAGE;
            page["links"] = json!({"next": {
                "uri": format!("auditrecords?startDate={start_text}"),
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": next.to_string()}],
            }});
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_page_two_at_a_time_from_the_start_date() {
        let mut log = AuditLog::default();
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        for n in 0..5 {
            log.record("c", "subscription", &json!({"id": format!("s{n}")}));
        }
        let first = log.page(before, 0, "x");
        assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(first["links"]["next"]["headers"][0]["value"], "2");
        let last = log.page(before, 4, "x");
        assert_eq!(last["items"].as_array().map(Vec::len), Some(1));
        assert!(last.get("links").is_none());
        let record = &first["items"][0];
        let value: Value =
            serde_json::from_str(record["resourceNewValue"].as_str().expect("s")).expect("json");
        assert_eq!(value["id"], "s0");
        assert_eq!(record["resourceType"], "subscription");
        let later = log.page(
            SystemTime::now() + std::time::Duration::from_secs(60),
            0,
            "x",
        );
        assert_eq!(later["items"].as_array().map(Vec::len), Some(0));
    }
}
