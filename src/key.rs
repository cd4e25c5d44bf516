//! The key that makes replays one notification: `(tenant, user_id, type, business_id)`.
//!
//! Invariant: the database's `notifications_key` UNIQUE constraint holds it; two enqueues with
//! equal keys are one notification for as long as the first is retained.

/// The identity of an intent: enqueues with equal keys are one notification.
///
/// ```
/// let n = herald::Notification::email("user-42", "order_shipped", "order-1001", "ann@example.com");
/// let key = n.key();
/// assert_eq!((key.tenant.as_str(), key.business_id.as_str()), ("default", "order-1001"));
/// assert_eq!(
///     key.to_string(),
///     r#"(tenant "default", user_id "user-42", type "order_shipped", business_id "order-1001")"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Whose notification it is (`"default"` unless given).
    pub tenant: String,
    /// The recipient, in the application's terms.
    pub user_id: String,
    /// What kind of notification: the email template's folder, the webhook's `type`.
    pub type_: String,
    /// What it is about, in the application's terms (an order id, an event id).
    pub business_id: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "(tenant {:?}, user_id {:?}, type {:?}, business_id {:?})",
            self.tenant, self.user_id, self.type_, self.business_id
        )
    }
}
