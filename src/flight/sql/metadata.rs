//! The catalog commands and `GetSqlInfo`: collections as schemas, items as tables.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Command, CommandGetPrimaryKeys, Nullable, ProstMessageExt, Searchable, SqlInfo,
    SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType,
};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use prost::Message;

use super::{Batches, FlightSql};
use crate::auth::{Access, Level};
use crate::flight::error::{Error, Result};
use crate::flight::request;
use crate::sql::CATALOG;
use crate::storage::{self, At};

/// The table type of every item.
pub(super) const TABLE_TYPE: &str = "BASE TABLE";

/// Schema and ticket of a catalog command (the ticket is the command itself).
pub(super) fn info(command: Command) -> Result<(SchemaRef, Bytes)> {
    let (schema, any) = match command {
        Command::CommandGetCatalogs(c) => (c.into_builder().schema(), c.as_any()),
        Command::CommandGetDbSchemas(c) => (c.clone().into_builder().schema(), c.as_any()),
        Command::CommandGetTables(c) => (c.clone().into_builder().schema(), c.as_any()),
        Command::CommandGetTableTypes(c) => (c.into_builder().schema(), c.as_any()),
        Command::CommandGetSqlInfo(c) => (c.clone().into_builder(sql_info()).schema(), c.as_any()),
        Command::CommandGetXdbcTypeInfo(c) => (c.into_builder(xdbc_info()).schema(), c.as_any()),
        Command::CommandGetPrimaryKeys(c) => (primary_keys_schema(), c.as_any()),
        Command::CommandGetImportedKeys(c) => (foreign_keys_schema(), c.as_any()),
        Command::CommandGetExportedKeys(c) => (foreign_keys_schema(), c.as_any()),
        Command::CommandGetCrossReference(c) => (foreign_keys_schema(), c.as_any()),
        other => return Err(not_a_query(&other)),
    };
    Ok((schema, any.encode_to_vec().into()))
}

/// The batches of a catalog ticket.
pub(super) async fn get(
    service: &FlightSql,
    access: &Access,
    command: Command,
) -> Result<(SchemaRef, Batches)> {
    let encode = |e: arrow_flight::error::FlightError| Error::Encode {
        what: "a catalog result",
        source: arrow::error::ArrowError::ExternalError(Box::new(e)),
    };
    let batch = match command {
        Command::CommandGetCatalogs(c) => {
            let mut b = c.into_builder();
            b.append(CATALOG);
            b.build().map_err(encode)?
        }
        Command::CommandGetDbSchemas(c) => {
            let mut b = c.into_builder();
            for collection in service.engine().list_collections().await? {
                if !access.allows(&collection, Level::Read) {
                    continue;
                }
                b.append(CATALOG, collection);
            }
            b.build().map_err(encode)?
        }
        Command::CommandGetTables(c) => {
            let include_schema = c.include_schema;
            let catalog_ok = c.catalog.as_deref().is_none_or(|x| x == CATALOG);
            let schema_pattern = c.db_schema_filter_pattern.clone();
            let table_pattern = c.table_name_filter_pattern.clone();
            let types_ok =
                c.table_types.is_empty() || c.table_types.iter().any(|t| t == TABLE_TYPE);
            let mut b = c.into_builder();
            if catalog_ok && types_ok {
                let engine = service.engine();
                let mut collections = engine.list_collections().await?;
                collections.retain(|c| access.allows(c, Level::Read));
                for collection in matching(schema_pattern.as_deref(), collections)? {
                    let c = request::collection(&collection)?;
                    let items = engine.list_items(&c, None, None).await?;
                    for item in matching(table_pattern.as_deref(), items)? {
                        let schema = if include_schema {
                            let i = request::item(&item)?;
                            match engine.item_info(&c, &i, &At::Latest).await {
                                // The schema a query of it announces.
                                Ok(info) => crate::sql::wire_schema(&info.schema),
                                Err(storage::Error::ItemNotFound { .. }) => continue,
                                Err(e) => return Err(e.into()),
                            }
                        } else {
                            Arc::new(Schema::empty())
                        };
                        b.append(CATALOG, &collection, &item, TABLE_TYPE, &schema)
                            .map_err(encode)?;
                    }
                }
            }
            b.build().map_err(encode)?
        }
        Command::CommandGetTableTypes(c) => {
            let mut b = c.into_builder();
            b.append(TABLE_TYPE);
            b.build().map_err(encode)?
        }
        Command::CommandGetSqlInfo(c) => c.into_builder(sql_info()).build().map_err(encode)?,
        Command::CommandGetXdbcTypeInfo(c) => {
            c.into_builder(xdbc_info()).build().map_err(encode)?
        }
        Command::CommandGetPrimaryKeys(c) => primary_keys(service, access, c).await?,
        Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => RecordBatch::new_empty(foreign_keys_schema()),
        other => return Err(not_a_query(&other)),
    };
    let schema = batch.schema();
    Ok((schema, stream::once(async { Ok(batch) }).boxed()))
}

fn not_a_query(command: &Command) -> Error {
    Error::UnsupportedSqlCommand {
        command: command.type_url().to_string(),
        hint: "GetFlightInfo takes SQL statements, prepared statements and catalog commands \
               (no Substrait plans)",
    }
}

/// The names that match a SQL `LIKE` pattern (`%`, `_`, `\` escapes; none: all), with
/// arrow's kernel, the one the catalog builders filter with.
fn matching(pattern: Option<&str>, names: Vec<String>) -> Result<Vec<String>> {
    let Some(pattern) = pattern else {
        return Ok(names);
    };
    let array = StringArray::from(names);
    let keep =
        arrow::compute::like(&array, &StringArray::new_scalar(pattern)).map_err(|source| {
            Error::Encode {
                what: "a name pattern",
                source,
            }
        })?;
    Ok(array
        .iter()
        .zip(keep.iter())
        .filter(|(_, keep)| keep.unwrap_or(false))
        .map(|(name, _)| name.unwrap_or_default().to_string())
        .collect())
}

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// The key of an item that declares `dedup_on`: its ordering column, then the keys.
async fn primary_keys(
    service: &FlightSql,
    access: &Access,
    c: CommandGetPrimaryKeys,
) -> Result<RecordBatch> {
    let schema = primary_keys_schema();
    let (Some(collection), true) = (
        c.db_schema.as_deref(),
        c.catalog.as_deref().is_none_or(|x| x == CATALOG),
    ) else {
        return Ok(RecordBatch::new_empty(schema));
    };
    let (Ok(coll), Ok(item)) = (request::collection(collection), request::item(&c.table)) else {
        return Ok(RecordBatch::new_empty(schema));
    };
    // Like the listings: what the caller may not read is not shown.
    if !access.allows(coll.as_str(), Level::Read) {
        return Ok(RecordBatch::new_empty(schema));
    }
    let info = match service.engine().item_info(&coll, &item, &At::Latest).await {
        Ok(info) => info,
        Err(storage::Error::ItemNotFound { .. } | storage::Error::CollectionNotFound { .. }) => {
            return Ok(RecordBatch::new_empty(schema))
        }
        Err(e) => return Err(e.into()),
    };
    let settings = &info.settings;
    let mut columns = Vec::new();
    if !settings.dedup_on.is_empty() {
        columns.push(settings.ordered_on.clone());
        let keys = settings.dedup_on.iter();
        columns.extend(keys.filter(|k| **k != settings.ordered_on).cloned());
    }
    let n = columns.len();
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some(CATALOG); n])),
        Arc::new(StringArray::from(vec![Some(collection); n])),
        Arc::new(StringArray::from(vec![c.table.as_str(); n])),
        Arc::new(StringArray::from(columns)),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(Int32Array::from_iter_values(1..=n as i32)),
    ];
    RecordBatch::try_new(schema, arrays).map_err(|source| Error::Encode {
        what: "the primary keys",
        source,
    })
}

/// The server's `GetSqlInfo` answers: every id JDBC reads, each with its spec type.
fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        use datafusion::functions as f;
        let names = |fs: Vec<Arc<datafusion::logical_expr::ScalarUDF>>| -> Vec<String> {
            let mut v: Vec<String> = fs.iter().map(|f| f.name().to_uppercase()).collect();
            v.sort();
            v
        };
        let mut strings = names(f::string::functions());
        strings.extend(names(f::unicode::functions()));
        let keywords: Vec<String> = datafusion::sql::sqlparser::keywords::ALL_KEYWORDS
            .iter()
            .map(|k| k.to_string())
            .collect();
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Flightstore");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
        b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
        b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
        b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32,
        );
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlQuotedIdentifierCase, 0i32);
        b.append(SqlInfo::SqlAllTablesAreSelectable, true);
        b.append(
            SqlInfo::SqlNullOrdering,
            SqlNullOrdering::SqlNullsSortedHigh as i32,
        );
        b.append(SqlInfo::SqlKeywords, keywords);
        b.append(SqlInfo::SqlNumericFunctions, names(f::math::functions()));
        b.append(SqlInfo::SqlStringFunctions, strings);
        b.append(SqlInfo::SqlSystemFunctions, names(f::core::functions()));
        b.append(
            SqlInfo::SqlDatetimeFunctions,
            names(f::datetime::functions()),
        );
        b.append(SqlInfo::SqlSearchStringEscape, "\\");
        b.append(SqlInfo::SqlExtraNameCharacters, "");
        b.append(SqlInfo::SqlSupportsColumnAliasing, true);
        b.append(SqlInfo::SqlNullPlusNullIsNull, true);
        b.append(
            SqlInfo::SqlSupportsConvert,
            std::collections::BTreeMap::<i32, Vec<i32>>::new(),
        );
        b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
        b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
        b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
        b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
        b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
        b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
        b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
        b.append(SqlInfo::SqlSupportedGrammar, 0b1i32);
        b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b1i32);
        b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
        b.append(SqlInfo::SqlOuterJoinsSupportLevel, 2i32);
        b.append(SqlInfo::SqlSchemaTerm, "collection");
        b.append(SqlInfo::SqlProcedureTerm, "procedure");
        b.append(SqlInfo::SqlCatalogTerm, "catalog");
        b.append(SqlInfo::SqlCatalogAtStart, true);
        b.append(SqlInfo::SqlSchemasSupportedActions, 0b1i32);
        b.append(SqlInfo::SqlCatalogsSupportedActions, 0b1i32);
        b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
        b.append(SqlInfo::SqlSelectForUpdateSupported, false);
        b.append(SqlInfo::SqlStoredProceduresSupported, false);
        b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
        b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
        b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
        for id in [
            SqlInfo::SqlMaxBinaryLiteralLength,
            SqlInfo::SqlMaxCharLiteralLength,
            SqlInfo::SqlMaxColumnNameLength,
            SqlInfo::SqlMaxColumnsInGroupBy,
            SqlInfo::SqlMaxColumnsInIndex,
            SqlInfo::SqlMaxColumnsInOrderBy,
            SqlInfo::SqlMaxColumnsInSelect,
            SqlInfo::SqlMaxColumnsInTable,
            SqlInfo::SqlMaxConnections,
            SqlInfo::SqlMaxCursorNameLength,
            SqlInfo::SqlMaxIndexLength,
            SqlInfo::SqlDbSchemaNameLength,
            SqlInfo::SqlMaxProcedureNameLength,
            SqlInfo::SqlMaxCatalogNameLength,
            SqlInfo::SqlMaxRowSize,
            SqlInfo::SqlMaxStatementLength,
            SqlInfo::SqlMaxStatements,
            SqlInfo::SqlMaxTableNameLength,
            SqlInfo::SqlMaxTablesInSelect,
            SqlInfo::SqlMaxUsernameLength,
        ] {
            b.append(id, 0i64); // 0: no limit known
        }
        b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
        b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
        b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
        b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
        b.append(SqlInfo::SqlSupportedResultSetTypes, 0b10i32);
        for id in [
            SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
            SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
            SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
            SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        ] {
            b.append(id, 0b10i32); // read only
        }
        b.append(SqlInfo::SqlBatchUpdatesSupported, true);
        b.append(SqlInfo::SqlSavepointsSupported, false);
        b.append(SqlInfo::SqlNamedParametersSupported, false);
        b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
        b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
        b.build().expect("the SqlInfo values build")
    })
}

/// The SQL types items hold, for `GetXdbcTypeInfo`.
fn xdbc_info() -> &'static XdbcTypeInfoData {
    static INFO: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = XdbcTypeInfoDataBuilder::new();
        let types = [
            ("BOOLEAN", XdbcDataType::XdbcBit, None, None),
            ("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None),
            ("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None),
            ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
            ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
            ("FLOAT", XdbcDataType::XdbcFloat, Some(24), None),
            ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), None),
            ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None),
            ("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")),
            ("VARBINARY", XdbcDataType::XdbcVarbinary, None, None),
            ("DATE", XdbcDataType::XdbcDate, Some(10), Some("DATE '")),
            (
                "TIMESTAMP",
                XdbcDataType::XdbcTimestamp,
                Some(29),
                Some("TIMESTAMP '"),
            ),
        ];
        for (name, data_type, size, prefix) in types {
            b.append(XdbcTypeInfo {
                type_name: name.into(),
                data_type,
                column_size: size,
                literal_prefix: prefix.map(Into::into),
                literal_suffix: prefix.map(|_| "'".into()),
                create_params: None,
                nullable: Nullable::NullabilityNullable,
                case_sensitive: data_type == XdbcDataType::XdbcVarchar,
                searchable: Searchable::Full,
                unsigned_attribute: None,
                fixed_prec_scale: false,
                auto_increment: None,
                local_type_name: Some(name.into()),
                minimum_scale: None,
                maximum_scale: None,
                sql_data_type: data_type,
                datetime_subcode: None,
                num_prec_radix: None,
                interval_precision: None,
            });
        }
        b.build().expect("the type infos build")
    })
}
