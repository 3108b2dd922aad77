//! What each request does to the simulator's data: reads, and writes that bump versions.
//!
//! The one place that knows how the resources hang together, so the cross-resource rule of
//! SPEC §13 holds in the stand-in as in Partner Center: creating an order creates a
//! subscription per line item or grows the customer's subscription for that offer, and a PATCH
//! of an order's quantities changes those subscriptions — each change bumps the subscription's
//! version, so its `attributes.etag` changes. Every write honours `If-Match` against the
//! resource's current ETag. A placed order is `pending` until its provisioning time has passed
//! (SPEC §15.4), then `completed` with a new etag and its subscriptions. The server ([`simulator`](super::simulator)) parses
//! requests and calls one method here per path and method; nothing here touches HTTP.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;

use crate::demo::accounts::{
    bad_field, billing_etag, billing_json, customer_etag, customer_json, customer_not_found,
    find_customer, find_customer_mut, find_subscription_mut, merged_billing, sample_customers,
    sample_subscriptions, subscription_etag, subscription_json, text, Customer, Subscription,
};
use crate::demo::catalog::{
    bad_request, collection_json, error_json, etag, find, find_mut, order_id, order_json,
    sample_orders, subscription_id, Failure, LineItem, Order, OFFERS,
};

/// A status and JSON body, or Partner Center's error.
pub(crate) type Answer = Result<(StatusCode, Value), Failure>;

/// The simulator's orders, subscriptions and customers.
pub(crate) struct Store {
    orders: Vec<Order>,
    subscriptions: Vec<Subscription>,
    customers: Vec<Customer>,
    /// How long a placed order stays `pending` (SPEC §15.4); zero: completed at once.
    provisioning: Duration,
}

/// A 412 unless `given` (an `If-Match` value, quotes allowed, `*` for any) is one of `current`.
fn check_if_match(given: Option<&str>, current: &[String], what: &str) -> Result<(), Failure> {
    let Some(given) = given else { return Ok(()) };
    let given = given.trim().trim_matches('"');
    if given == "*" || current.iter().any(|c| c == given) {
        return Ok(());
    }
    Err(error_json(
        StatusCode::PRECONDITION_FAILED,
        412,
        &format!("The {what} has changed"),
    ))
}

/// `value` as a seat count (a whole number, at least 1), else a 400 naming `field`.
fn seats(value: &Value, field: &str) -> Result<u64, Failure> {
    value
        .as_u64()
        .filter(|q| *q >= 1)
        .ok_or_else(|| bad_field(field))
}

impl Store {
    /// The sample data; placed orders stay `pending` for `provisioning`.
    pub(crate) fn sample(provisioning: Duration) -> Store {
        let orders = sample_orders();
        Store {
            subscriptions: sample_subscriptions(&orders),
            orders,
            customers: sample_customers(),
            provisioning,
        }
    }

    /// Finishes the provisioning of every order whose time has come (SPEC §15.4): `completed`,
    /// a new etag, its subscriptions made or grown — with no call from anyone. Run before every
    /// request, so what a request reads is as of its arrival.
    /// Returns each order it completed (its customer and its new state), for the audit log.
    pub(crate) fn settle(&mut self, now: Instant) -> Vec<(String, Value)> {
        let due: Vec<usize> = (self.orders.iter().enumerate())
            .filter(|(_, order)| order.settles_at.is_some_and(|at| at <= now))
            .map(|(index, _)| index)
            .collect();
        let mut settled = Vec::new();
        for index in due {
            self.provision(index);
            let order = &mut self.orders[index];
            order.settles_at = None;
            order.status = "completed".to_owned();
            order.version += 1;
            settled.push((order.customer.clone(), order_json(order)));
        }
        settled
    }

    /// Makes or grows the subscription of each of the order's line items.
    fn provision(&mut self, index: usize) {
        let (customer, order_id, billing_cycle) = {
            let order = &self.orders[index];
            (
                order.customer.clone(),
                order.id.clone(),
                order.billing_cycle.clone(),
            )
        };
        for item in 0..self.orders[index].line_items.len() {
            let line = &self.orders[index].line_items[item];
            let (offer, quantity, name) = (
                line.offer_id.clone(),
                line.quantity,
                line.friendly_name.clone(),
            );
            let existing = self
                .subscriptions
                .iter_mut()
                .find(|s| s.customer == customer && s.offer_id.eq_ignore_ascii_case(&offer));
            let id = match existing {
                Some(s) => {
                    s.quantity = s.quantity.saturating_add(quantity);
                    s.version += 1;
                    s.id.clone()
                }
                None => {
                    let number = self.subscriptions.len();
                    self.subscriptions.push(Subscription {
                        customer: customer.clone(),
                        id: subscription_id(number),
                        offer_id: offer.clone(),
                        offer_name: offer_name(&offer, Some(&name)),
                        friendly_name: name.clone(),
                        quantity,
                        status: "active".to_owned(),
                        order_id: order_id.clone(),
                        billing_cycle: billing_cycle.clone(),
                        auto_renew: true,
                        version: 1,
                        index: number,
                    });
                    subscription_id(number)
                }
            };
            self.orders[index].line_items[item].subscription_id = id;
        }
    }

    /// `GET /v1/customers/{c}/orders/{o}`.
    pub(crate) fn order(&self, c: &str, o: &str) -> Answer {
        let order = find(&self.orders, c, o)?;
        Ok((StatusCode::OK, order_json(order)))
    }

    /// `GET /v1/customers/{c}/orders`.
    pub(crate) fn orders(&self, c: &str) -> Answer {
        let items: Vec<Value> = self
            .orders
            .iter()
            .filter(|o| o.customer.eq_ignore_ascii_case(c))
            .map(order_json)
            .collect();
        if items.is_empty() {
            return Err(customer_not_found());
        }
        Ok((StatusCode::OK, collection_json(c, "orders", items)))
    }

    /// `PATCH /v1/customers/{c}/orders/{o}`: `status`, and `lineItems[]` (`quantity`,
    /// `friendlyName`; by `lineItemNumber`, else by position). A changed quantity changes the
    /// line item's subscription by the same number of seats.
    pub(crate) fn patch_order(
        &mut self,
        c: &str,
        o: &str,
        if_match: Option<&str>,
        patch: &Value,
    ) -> Answer {
        let order = find_mut(&mut self.orders, c, o)?;
        check_if_match(if_match, &[etag(order)], "order")?;
        let mut changes = Vec::new();
        if let Some(items) = patch.get("lineItems") {
            let items = items.as_array().ok_or_else(|| bad_field("lineItems"))?;
            for (position, item) in items.iter().enumerate() {
                let number = match item.get("lineItemNumber") {
                    Some(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                    None => Some(position),
                }
                .filter(|n| *n < order.line_items.len())
                .ok_or_else(|| bad_field("lineItemNumber"))?;
                let quantity = item
                    .get("quantity")
                    .map(|q| seats(q, "quantity"))
                    .transpose()?;
                let name = item
                    .get("friendlyName")
                    .map(|n| text(n, "friendlyName"))
                    .transpose()?;
                changes.push((number, quantity, name));
            }
        }
        if let Some(status) = patch.get("status") {
            order.status = text(status, "status")?;
        }
        let mut moved = Vec::new();
        for (number, quantity, name) in changes {
            let item = &mut order.line_items[number];
            if let Some(q) = quantity {
                moved.push((item.subscription_id.clone(), item.quantity, q));
                item.quantity = q;
            }
            if let Some(name) = name {
                item.friendly_name = name;
            }
        }
        order.version += 1;
        let answer = order_json(order);
        for (s, from, to) in moved {
            if let Ok(subscription) = find_subscription_mut(&mut self.subscriptions, c, &s) {
                let seats = subscription
                    .quantity
                    .saturating_add(to)
                    .saturating_sub(from);
                if seats != subscription.quantity {
                    subscription.quantity = seats;
                    subscription.version += 1;
                }
            }
        }
        Ok((StatusCode::OK, answer))
    }

    /// `POST /v1/customers/{c}/orders`: a new order of `lineItems[]` (`offerId`, `quantity`,
    /// optional `friendlyName`), answered 201. It is `pending` until its provisioning time has
    /// passed (see [`Store::settle`]); then each line item grows the customer's subscription to
    /// its offer, or creates one.
    pub(crate) fn create_order(&mut self, c: &str, body: &Value, now: Instant) -> Answer {
        let customer = find_customer(&self.customers, c)?.id.clone();
        let items = body
            .get("lineItems")
            .and_then(Value::as_array)
            .filter(|items| !items.is_empty())
            .ok_or_else(|| bad_request("An order needs at least one line item"))?;
        let mut wanted = Vec::new();
        for item in items {
            let offer = item
                .get("offerId")
                .and_then(Value::as_str)
                .filter(|o| !o.is_empty())
                .ok_or_else(|| bad_field("offerId"))?;
            let quantity = seats(item.get("quantity").unwrap_or(&Value::Null), "quantity")?;
            let name = match item.get("friendlyName") {
                Some(name) => Some(text(name, "friendlyName")?),
                None => None,
            };
            wanted.push((offer.to_owned(), quantity, name));
        }
        let billing_cycle = match body.get("billingCycle") {
            Some(cycle) => text(cycle, "billingCycle")?,
            None => "monthly".to_owned(),
        };
        let index = self.orders.len();
        let line_items = wanted
            .into_iter()
            .map(|(offer, quantity, name)| LineItem {
                friendly_name: name.unwrap_or_else(|| offer_name(&offer, None)),
                offer_id: offer,
                subscription_id: String::new(),
                quantity,
            })
            .collect();
        self.orders.push(Order {
            customer,
            id: order_id(index),
            version: 1,
            status: "pending".to_owned(),
            billing_cycle,
            line_items,
            index,
            settles_at: Some(now + self.provisioning),
        });
        // Without a provisioning time the order is completed (and its subscriptions made) at once.
        if self.provisioning.is_zero() {
            self.provision(index);
            let order = &mut self.orders[index];
            order.settles_at = None;
            order.status = "completed".to_owned();
        }
        let order = &self.orders[index];
        Ok((StatusCode::CREATED, order_json(order)))
    }

    /// `GET /v1/customers/{c}/subscriptions/{s}`.
    pub(crate) fn subscription(&self, c: &str, s: &str) -> Answer {
        self.subscriptions
            .iter()
            .find(|x| x.customer.eq_ignore_ascii_case(c) && x.id.eq_ignore_ascii_case(s))
            .map(|x| (StatusCode::OK, subscription_json(x)))
            .ok_or_else(|| error_json(StatusCode::NOT_FOUND, 800_002, "Subscription not found"))
    }

    /// `GET /v1/customers/{c}/subscriptions`.
    pub(crate) fn subscriptions(&self, c: &str) -> Answer {
        find_customer(&self.customers, c)?;
        let items: Vec<Value> = self
            .subscriptions
            .iter()
            .filter(|s| s.customer.eq_ignore_ascii_case(c))
            .map(subscription_json)
            .collect();
        Ok((StatusCode::OK, collection_json(c, "subscriptions", items)))
    }

    /// `PATCH /v1/customers/{c}/subscriptions/{s}`: `quantity`, `status` (`active` or
    /// `suspended`), `autoRenewEnabled`, `friendlyName`. Every PATCH bumps the version.
    pub(crate) fn patch_subscription(
        &mut self,
        c: &str,
        s: &str,
        if_match: Option<&str>,
        patch: &Value,
    ) -> Answer {
        let subscription = find_subscription_mut(&mut self.subscriptions, c, s)?;
        check_if_match(if_match, &[subscription_etag(subscription)], "subscription")?;
        let quantity = patch
            .get("quantity")
            .map(|q| seats(q, "quantity"))
            .transpose()?;
        let status = match patch.get("status").map(|s| s.as_str()) {
            None => None,
            Some(Some(s)) if s.eq_ignore_ascii_case("active") => Some("active"),
            Some(Some(s)) if s.eq_ignore_ascii_case("suspended") => Some("suspended"),
            Some(_) => return Err(bad_field("status")),
        };
        let renew = match patch.get("autoRenewEnabled") {
            None => None,
            Some(v) => Some(v.as_bool().ok_or_else(|| bad_field("autoRenewEnabled"))?),
        };
        let name = patch
            .get("friendlyName")
            .map(|n| text(n, "friendlyName"))
            .transpose()?;
        if let Some(q) = quantity {
            subscription.quantity = q;
        }
        if let Some(status) = status {
            status.clone_into(&mut subscription.status);
        }
        if let Some(renew) = renew {
            subscription.auto_renew = renew;
        }
        if let Some(name) = name {
            subscription.friendly_name = name;
        }
        subscription.version += 1;
        Ok((StatusCode::OK, subscription_json(subscription)))
    }

    /// `GET /v1/customers/{c}`.
    pub(crate) fn customer(&self, c: &str) -> Answer {
        let customer = find_customer(&self.customers, c)?;
        Ok((StatusCode::OK, customer_json(customer)))
    }

    /// `GET /v1/customers/{c}/profiles/billing`.
    pub(crate) fn billing(&self, c: &str) -> Answer {
        let customer = find_customer(&self.customers, c)?;
        Ok((StatusCode::OK, billing_json(customer)))
    }

    /// `PATCH /v1/customers/{c}`: `companyProfile` (`companyName`, `domain`) and
    /// `billingProfile` fields. Bumps the customer's version; answers the customer.
    pub(crate) fn patch_customer(
        &mut self,
        c: &str,
        if_match: Option<&str>,
        patch: &Value,
    ) -> Answer {
        let customer = find_customer_mut(&mut self.customers, c)?;
        check_if_match(if_match, &[customer_etag(customer)], "customer")?;
        let company = match patch.get("companyProfile") {
            None => None,
            Some(Value::Object(company)) => Some(company),
            Some(_) => return Err(bad_field("companyProfile")),
        };
        let name = company
            .and_then(|c| c.get("companyName"))
            .map(|n| text(n, "companyName"))
            .transpose()?;
        let domain = company
            .and_then(|c| c.get("domain"))
            .map(|d| text(d, "domain"))
            .transpose()?;
        let billing = patch
            .get("billingProfile")
            .map(|b| merged_billing(&customer.billing, b))
            .transpose()?;
        if let Some(name) = name {
            customer.company_name = name;
        }
        if let Some(domain) = domain {
            customer.domain = domain;
        }
        if let Some(billing) = billing {
            customer.billing = billing;
        }
        customer.version += 1;
        Ok((StatusCode::OK, customer_json(customer)))
    }

    /// `PUT /v1/customers/{c}/profiles/billing`: the billing profile's fields. `If-Match` may
    /// carry the billing profile's or the customer's ETag. Bumps the customer's version;
    /// answers the billing profile.
    pub(crate) fn put_billing(&mut self, c: &str, if_match: Option<&str>, body: &Value) -> Answer {
        let customer = find_customer_mut(&mut self.customers, c)?;
        let current = [billing_etag(customer), customer_etag(customer)];
        check_if_match(if_match, &current, "billing profile")?;
        customer.billing = merged_billing(&customer.billing, body)?;
        customer.version += 1;
        Ok((StatusCode::OK, billing_json(customer)))
    }
}

/// The catalogue's name of `offer`, or else the name the buyer gave, or else the offer id.
fn offer_name(offer: &str, given: Option<&str>) -> String {
    OFFERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(offer))
        .map(|(_, known)| (*known).to_owned())
        .or_else(|| given.map(str::to_owned))
        .unwrap_or_else(|| offer.to_owned())
}
