//! The key's four arguments, the same for every command that names a notification by its key.

use clap::Args;

use crate::key::Key;
use crate::notification::DEFAULT_TENANT;

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The user the notification is for (key part).
    #[arg(long, value_name = "U")]
    user: String,
    /// The notification type, e.g. order_shipped (key part; names the email template).
    #[arg(long = "type", value_name = "T")]
    type_: String,
    /// The business object it is about, e.g. order-1001 (key part).
    #[arg(long, value_name = "B")]
    business_id: String,
    /// Tenant (key part). Default "default".
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
}

impl KeyArgs {
    /// The key, with the default tenant when none was given.
    pub fn key(&self) -> Key {
        Key {
            tenant: self
                .tenant
                .clone()
                .unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
            user_id: self.user.clone(),
            type_: self.type_.clone(),
            business_id: self.business_id.clone(),
        }
    }
}
