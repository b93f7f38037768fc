//! `weft apikey create|list|revoke`: API keys, managed on the data directory itself (like
//! `weft migrate`), not through the API — the first key has to exist before any request can
//! be authorized. A running server picks up a change within `weft_api::KEY_REFRESH`.

use crate::args::{ApikeyCmd, ConfigArgs, Format, RoleArg};
use crate::output::{self, Table};
use anyhow::Context;
use weft_core::time::{Clock, SystemClock};
use weft_store::{ApiRole, DynStore};

/// Runs an `apikey` subcommand.
pub async fn apikey(cmd: ApikeyCmd) -> anyhow::Result<()> {
    match cmd {
        ApikeyCmd::Create { role, name, config } => {
            let store = open(config).await?;
            let issued = weft_api::issue_key(role.into(), name, SystemClock.now_ms());
            let rec = store
                .apikey_create(&issued.record)
                .await
                .context("cannot store the key")?;
            store.close();
            eprintln!(
                "created {} key {}; it is shown only now, so store it safely.\n\
                 Send it as `Authorization: Bearer <key>` (the CLI reads WEFT_API_KEY).",
                rec.role, rec.id
            );
            output::print_stdout(&format!("{}\n", issued.token));
            Ok(())
        }
        ApikeyCmd::List { config, output } => {
            let store = open(config).await?;
            let keys = store.apikey_list().await.context("cannot read the keys")?;
            store.close();
            if output == Format::Json {
                output::print_json(&serde_json::to_value(&keys)?);
                return Ok(());
            }
            let mut t = Table::new(&["ID", "NAME", "ROLE", "CREATED", "REVOKED"]);
            for k in keys {
                t.row(vec![
                    k.id,
                    k.name.unwrap_or_default(),
                    k.role.to_string(),
                    output::time(&k.created_at.into()),
                    k.revoked_at
                        .map(|t| output::time(&t.into()))
                        .unwrap_or_default(),
                ]);
            }
            t.print();
            Ok(())
        }
        ApikeyCmd::Revoke { id, config } => {
            let store = open(config).await?;
            let result = store.apikey_revoke(&id, SystemClock.now_ms()).await;
            store.close();
            let rec = result.with_context(|| format!("cannot revoke key {id}"))?;
            eprintln!("revoked {} key {}", rec.role, rec.id);
            Ok(())
        }
    }
}

/// Opens the store the config names (creating and migrating it if needed).
async fn open(args: ConfigArgs) -> anyhow::Result<DynStore> {
    crate::store::open(&args.load()?).await
}

impl From<RoleArg> for ApiRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => ApiRole::Viewer,
            RoleArg::Operator => ApiRole::Operator,
            RoleArg::Admin => ApiRole::Admin,
        }
    }
}
