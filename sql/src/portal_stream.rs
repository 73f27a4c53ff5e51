//! `Execute` without a row limit, with the rows streamed to the socket as they are produced.
//!
//! The protocol library's default `Execute` hands a query's rows to the portal and then
//! fetches from it, and a fetch without a row limit collects the whole result in a vector
//! before the first row is written: a large result lived in the server's memory, outside the
//! memory pool and whatever the client's pace (3 s of `generate_series` over psycopg took the
//! server past 1 GiB under `--memory-mb 256`). Here each row is written as it comes, under the
//! socket's backpressure, as the simple protocol does. An `Execute` with a row limit (JDBC's
//! fetch size, a portal read in pieces) still goes through the portal: it holds at most that
//! many rows.
//!
//! Everything else is the library's `Execute` as it stands: the same states, transaction
//! status, responses and errors.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::copy::{send_copy_both_response, send_copy_in_response, send_copy_out_response};
use pgwire::api::portal::{Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, send_execution_response};
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::EmptyQueryResponse;

/// Whether `portal` has not run yet, so that an unlimited `Execute` may stream it.
pub async fn not_started<S: Clone>(portal: &Portal<S>) -> bool {
    matches!(*portal.state().lock().await, PortalExecutionState::Initial)
}

/// Runs a portal that has not started and sends all of its response; the portal is finished
/// afterwards (a second `Execute` of it answers with no rows, as in PostgreSQL).
pub async fn execute_unlimited<H, C>(
    handler: &H,
    client: &mut C,
    portal: Arc<Portal<H::Statement>>,
) -> PgWireResult<()>
where
    H: ExtendedQueryHandler + ?Sized,
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore<Statement = H::Statement>,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
        return Err(PgWireError::NotReadyForQuery);
    }
    let mut transaction_status = client.transaction_status();
    client.set_state(PgWireConnectionState::QueryInProgress);
    match handler.do_query(client, portal.as_ref(), 0).await? {
        Response::Query(mut results) => {
            *portal.state().lock().await = PortalExecutionState::Finished;
            let command_tag = results.command_tag().to_owned();
            let mut rows = 0;
            let data_rows = results.data_rows();
            while let Some(row) = data_rows.next().await {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                rows += 1;
            }
            let tag = Tag::new(&command_tag).with_rows(rows);
            // Written with the Sync's ReadyForQuery in one socket write, as the library's
            // `send_execution_response` does: a point lookup pays one write, not two.
            client
                .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
        }
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        Response::Execution(tag) => send_execution_response(client, tag).await?,
        Response::TransactionStart(tag) => {
            send_execution_response(client, tag).await?;
            transaction_status = transaction_status.to_in_transaction_state();
        }
        Response::TransactionEnd(tag) => {
            send_execution_response(client, tag).await?;
            transaction_status = transaction_status.to_idle_state();
            client.portal_store().rm_portal(DEFAULT_NAME);
        }
        Response::Error(err) => {
            client
                .send(PgWireBackendMessage::ErrorResponse((*err).into()))
                .await?;
            transaction_status = transaction_status.to_error_state();
        }
        Response::CopyIn(result) => {
            client.set_state(PgWireConnectionState::CopyInProgress(true));
            send_copy_in_response(client, result).await?;
        }
        Response::CopyOut(result) => send_copy_out_response(client, result).await?,
        Response::CopyBoth(result) => {
            client.set_state(PgWireConnectionState::CopyInProgress(true));
            send_copy_both_response(client, result).await?;
        }
    }
    if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(transaction_status);
    }
    Ok(())
}
