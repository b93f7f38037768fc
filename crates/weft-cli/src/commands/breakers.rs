//! `weft breakers`: the circuit breakers of the server process answering (in a cluster,
//! each worker process has its own).

use crate::args::{Format, NodesArgs};
use crate::client::Client;
use crate::output::{self, Table, cell, list, time};

/// Lists the answering process's circuit breakers, by target.
pub async fn breakers(args: NodesArgs) -> anyhow::Result<()> {
    let NodesArgs { client } = args;
    let c = Client::new(&client.url)?;
    let answer = c.get(&["v1", "breakers"], &[]).await?;
    if client.output == Format::Json {
        output::print_json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&[
        "TARGET",
        "STATE",
        "FAILURES",
        "OPENED",
        "NEXT PROBE",
        "ADAPTIVE TIMEOUT (MS)",
        "SAMPLES",
    ]);
    for b in list(&answer, "breakers") {
        table.row(vec![
            cell(&b["target"]),
            cell(&b["state"]),
            format!(
                "{}/{}",
                cell(&b["failures_in_window"]),
                cell(&b["failure_threshold"])
            ),
            time(&b["opened_at"]),
            time(&b["next_probe_at"]),
            cell(&b["adaptive_timeout_ms"]),
            cell(&b["latency_samples"]),
        ]);
    }
    table.print();
    Ok(())
}
