//! Names: catalog `flightstore`, a schema per collection, a table per item.
//!
//! A query's tables are resolved before it is planned: each item it names is pinned to
//! its latest version once (so a query sees one version of each item), and the time
//! travel calls `at_version(collection, item, version)` and `at_snapshot(collection,
//! item, snapshot)` are pinned the same way. The query then plans against a catalog of
//! exactly those tables.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
    TableFunctionArgs, TableFunctionImpl, TableProvider,
};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    self as ast, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
};

use super::error::{Error, Result};
use super::table::ItemTable;
use crate::auth::{Access, Level};
use crate::storage::{self, At, CollectionName, Engine, ItemName, ReadOptions, SnapshotName};

/// Versions of the items a query reads: (collection, item) -> version.
pub type Pins = std::collections::BTreeMap<(String, String), u64>;

/// The one catalog.
pub const CATALOG: &str = "flightstore";
/// The time travel table functions.
pub const AT_VERSION: &str = "at_version";
/// See [`AT_VERSION`].
pub const AT_SNAPSHOT: &str = "at_snapshot";

/// A time travel call, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TravelKey {
    collection: String,
    item: String,
    at: TravelAt,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TravelAt {
    Version(u64),
    Snapshot(String),
}

/// The tables of one query, pinned.
#[derive(Debug, Default)]
pub(crate) struct QueryTables {
    /// Plain references: collection -> item -> table.
    tables: HashMap<String, HashMap<String, Arc<ItemTable>>>,
    /// Time travel calls.
    travels: HashMap<TravelKey, Arc<ItemTable>>,
}

impl QueryTables {
    /// Resolve every table `statement` names, at the versions `pins` gives (the latest
    /// for the others).
    pub(crate) async fn resolve(
        engine: &Engine,
        access: &Access,
        statement: &Statement,
        references: Vec<TableReference>,
        pins: &Pins,
    ) -> Result<Self> {
        let mut out = Self::default();
        let calls = travel_calls(statement)?;
        for key in calls {
            let (c, i) = names(&key.collection, &key.item)?;
            access.check(c.as_str(), Level::Read)?;
            let at = match &key.at {
                TravelAt::Version(v) => At::Version(*v),
                TravelAt::Snapshot(s) => At::Snapshot(SnapshotName::new(s.as_str())?),
            };
            let table = load(engine, &c, &i, at).await?;
            out.travels.insert(key, table);
        }
        for reference in references {
            match &reference {
                TableReference::Bare { table } => return Err(unqualified(engine, table).await),
                TableReference::Partial { schema, table } => {
                    out.add(engine, access, schema, table, pins).await?;
                }
                TableReference::Full {
                    catalog,
                    schema,
                    table,
                } => {
                    if catalog.as_ref() != CATALOG {
                        return Err(storage::Error::CollectionNotFound {
                            collection: format!("{catalog}.{schema} (the catalog is {CATALOG})"),
                        }
                        .into());
                    }
                    out.add(engine, access, schema, table, pins).await?;
                }
            }
        }
        Ok(out)
    }

    async fn add(
        &mut self,
        engine: &Engine,
        access: &Access,
        collection: &str,
        item: &str,
        pins: &Pins,
    ) -> Result<()> {
        let (c, i) = names(collection, item)?;
        access.check(c.as_str(), Level::Read)?;
        let key = (collection.to_string(), item.to_string());
        let at = pins.get(&key).map_or(At::Latest, |v| At::Version(*v));
        let table = load(engine, &c, &i, at).await?;
        self.tables
            .entry(collection.to_string())
            .or_default()
            .insert(item.to_string(), table);
        Ok(())
    }

    /// The version each table named (not time travel) was resolved at.
    pub(crate) fn pins(&self) -> Pins {
        let mut pins = Pins::new();
        for (collection, items) in &self.tables {
            for (item, table) in items {
                pins.insert((collection.clone(), item.clone()), table.version());
            }
        }
        pins
    }

    /// The catalog to plan against.
    pub(crate) fn catalog(&self) -> Result<Arc<dyn CatalogProvider>> {
        let catalog = MemoryCatalogProvider::new();
        for (collection, items) in &self.tables {
            let schema = MemorySchemaProvider::new();
            for (item, table) in items {
                let table: Arc<dyn TableProvider> = Arc::clone(table) as _;
                schema.register_table(item.clone(), table)?;
            }
            catalog.register_schema(collection, Arc::new(schema))?;
        }
        Ok(Arc::new(catalog))
    }

    /// The time travel table functions over the calls resolved.
    pub(crate) fn time_travel(self: &Arc<Self>) -> [(&'static str, Arc<dyn TableFunctionImpl>); 2] {
        [
            (
                AT_VERSION,
                Arc::new(TimeTravel {
                    tables: Arc::clone(self),
                    name: AT_VERSION,
                }),
            ),
            (
                AT_SNAPSHOT,
                Arc::new(TimeTravel {
                    tables: Arc::clone(self),
                    name: AT_SNAPSHOT,
                }),
            ),
        ]
    }
}

fn names(collection: &str, item: &str) -> Result<(CollectionName, ItemName)> {
    Ok((CollectionName::new(collection)?, ItemName::new(item)?))
}

async fn load(engine: &Engine, c: &CollectionName, i: &ItemName, at: At) -> Result<Arc<ItemTable>> {
    let options = ReadOptions {
        at,
        ..Default::default()
    };
    let plan = engine.plan_read(c, i, options).await?;
    Ok(Arc::new(ItemTable::new(engine.clone(), plan)))
}

/// The error of a table named without its collection: where an item of that name is.
async fn unqualified(engine: &Engine, table: &str) -> Error {
    let mut holders = Vec::new();
    if let (Ok(collections), Ok(item)) = (engine.list_collections().await, ItemName::new(table)) {
        for c in collections {
            let Ok(c) = CollectionName::new(c) else {
                continue;
            };
            if engine
                .plan_read(&c, &item, ReadOptions::default())
                .await
                .is_ok()
            {
                holders.push(format!("{c}.{}", quote(table)));
            }
        }
    }
    let hint = if holders.is_empty() {
        format!("no collection holds an item {table:?}; write collection.item")
    } else {
        format!("write one of {}", holders.join(", "))
    };
    Error::Unqualified {
        table: table.to_string(),
        hint,
    }
}

/// `name` as a SQL identifier (quoted unless plain).
pub fn quote(name: &str) -> String {
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The time travel calls of a statement, with their arguments checked.
fn travel_calls(statement: &Statement) -> Result<Vec<TravelKey>> {
    struct Calls(Vec<TravelKey>);
    impl Visitor for Calls {
        type Break = Error;
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Error> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = factor
            {
                let function = name.to_string();
                if function == AT_VERSION || function == AT_SNAPSHOT {
                    match travel_key(&function, &args.args) {
                        Ok(key) => self.0.push(key),
                        Err(e) => return ControlFlow::Break(e),
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(Vec::new());
    let flow = match statement {
        Statement::Statement(s) => s.visit(&mut calls),
        Statement::Explain(e) => match e.statement.as_ref() {
            Statement::Statement(s) => s.visit(&mut calls),
            _ => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(calls.0),
    }
}

fn travel_key(function: &str, args: &[FunctionArg]) -> Result<TravelKey> {
    let usage = || {
        Error::unsupported(
            format!("{function} with these arguments"),
            format!(
                "call {AT_VERSION}('collection', 'item', <version number>) or \
                 {AT_SNAPSHOT}('collection', 'item', 'snapshot')"
            ),
        )
    };
    let values: Vec<&Value> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v))) => Some(&v.value),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(usage)?;
    let [c, i, at] = values.as_slice() else {
        return Err(usage());
    };
    let text = |v: &Value| match v {
        Value::SingleQuotedString(s) => Some(s.clone()),
        _ => None,
    };
    let (collection, item) = (text(c).ok_or_else(usage)?, text(i).ok_or_else(usage)?);
    let at = match (function, at) {
        (AT_VERSION, Value::Number(n, _)) => TravelAt::Version(n.parse().map_err(|_| usage())?),
        (AT_SNAPSHOT, Value::SingleQuotedString(s)) => TravelAt::Snapshot(s.clone()),
        _ => return Err(usage()),
    };
    Ok(TravelKey {
        collection,
        item,
        at,
    })
}

/// `at_version` / `at_snapshot`: the tables resolved before planning.
#[derive(Debug)]
struct TimeTravel {
    tables: Arc<QueryTables>,
    name: &'static str,
}

impl TableFunctionImpl for TimeTravel {
    fn call_with_args(&self, args: TableFunctionArgs<'_, '_>) -> DfResult<Arc<dyn TableProvider>> {
        let missing = || {
            datafusion::error::DataFusionError::Plan(format!(
                "{}: arguments are ('collection', 'item', {})",
                self.name,
                if self.name == AT_VERSION {
                    "version"
                } else {
                    "'snapshot'"
                }
            ))
        };
        let literal = |e: &Expr| match e {
            Expr::Literal(v, _) => Some(v.clone()),
            _ => None,
        };
        let values: Vec<ScalarValue> = args
            .exprs()
            .iter()
            .map(literal)
            .collect::<Option<_>>()
            .ok_or_else(missing)?;
        let [c, i, at] = values.as_slice() else {
            return Err(missing());
        };
        let text = |v: &ScalarValue| match v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
            _ => None,
        };
        let at = match at {
            ScalarValue::Int64(Some(v)) if self.name == AT_VERSION => TravelAt::Version(*v as u64),
            v if self.name == AT_SNAPSHOT => TravelAt::Snapshot(text(v).ok_or_else(missing)?),
            _ => return Err(missing()),
        };
        let key = TravelKey {
            collection: text(c).ok_or_else(missing)?,
            item: text(i).ok_or_else(missing)?,
            at,
        };
        let table = self.tables.travels.get(&key).ok_or_else(missing)?;
        Ok(Arc::clone(table) as _)
    }
}
