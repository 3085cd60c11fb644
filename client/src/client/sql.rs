//! SQL through Flight SQL: a `CommandStatementQuery` to `GetFlightInfo`, then its
//! endpoints as any read (parallel, in order), keeping the server's gRPC codes.

use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::FlightDescriptor;
use prost::Message;

use super::{Client, ReadStream, Result};

impl Client {
    /// Run a SQL statement (DESIGN.md, "Flight SQL": tables are `collection.item`,
    /// quoted when they are not plain identifiers); its result's batches.
    ///
    /// # Errors
    ///
    /// The server's refusal (`InvalidArgument` for bad SQL, `NotFound` for an unknown
    /// table), here or as the stream's last item.
    pub async fn sql(&self, query: &str) -> Result<ReadStream> {
        let command = CommandStatementQuery {
            query: query.to_string(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let info = self.flight_client().get_flight_info(descriptor).await?;
        self.fetch_info(info)
    }
}
