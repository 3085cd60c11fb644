package io.flightstore.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLFeatureNotSupportedException;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * DatabaseMetaData, as DBeaver and other JDBC tools call it: the catalog RPCs, and the
 * GetSqlInfo values behind every scalar getter (the driver casts each id to a fixed Java type,
 * so a missing or mistyped id is a NullPointerException or ClassCastException in the tool).
 */
@ExtendWith(Flightstore.Extension.class)
class MetadataTest {
  private final Flightstore fs;
  private Connection conn;
  private DatabaseMetaData md;

  MetadataTest(Flightstore fs) {
    this.fs = fs;
  }

  @BeforeEach
  void open() throws Exception {
    conn = fs.connect();
    md = conn.getMetaData();
  }

  @AfterEach
  void close() throws Exception {
    conn.close();
  }

  @Test
  void catalogs() throws Exception {
    assertEquals(List.of("flightstore"), Jdbc.column(md.getCatalogs(), "TABLE_CAT"));
  }

  @Test
  void schemas() throws Exception {
    List<String> all = Jdbc.column(md.getSchemas(), "TABLE_SCHEM");
    assertTrue(all.contains("NASDAQ"), "getSchemas(): " + all);
    assertTrue(all.contains("weather"), "getSchemas(): " + all);
    List<String> nas = Jdbc.column(md.getSchemas(null, "NAS%"), "TABLE_SCHEM");
    assertEquals(List.of("NASDAQ"), nas, "getSchemas(null, \"NAS%\")");
    List<String> inCatalog = Jdbc.column(md.getSchemas("flightstore", "%"), "TABLE_SCHEM");
    assertTrue(inCatalog.contains("NASDAQ"), "getSchemas(\"flightstore\", \"%\"): " + inCatalog);
  }

  @Test
  void tablesOfACollection() throws Exception {
    Map<String, String> types = new TreeMap<>();
    Map<String, String> catalogs = new TreeMap<>();
    try (ResultSet rs = md.getTables(null, "NASDAQ", "%", null)) {
      while (rs.next()) {
        assertEquals("NASDAQ", rs.getString("TABLE_SCHEM"));
        types.put(rs.getString("TABLE_NAME"), rs.getString("TABLE_TYPE"));
        catalogs.put(rs.getString("TABLE_NAME"), rs.getString("TABLE_CAT"));
      }
    }
    for (String item : List.of("AAPL", "TSLA", "MSFT", "NVDA")) {
      assertEquals("BASE TABLE", types.get(item), item + " in getTables(NASDAQ): " + types);
      assertEquals("flightstore", catalogs.get(item), item + " catalog: " + catalogs);
    }
    assertFalse(types.containsKey("berlin/1D"), "weather's item listed under NASDAQ: " + types);
  }

  @Test
  void tablesByTypeAndPatternAcrossCollections() throws Exception {
    List<String> names =
        Jdbc.column(md.getTables(null, null, "%", new String[] {"BASE TABLE"}), "TABLE_NAME");
    assertTrue(names.containsAll(List.of("AAPL", "MSFT", "berlin/1D")), "getTables: " + names);
    List<String> ms = Jdbc.column(md.getTables(null, null, "MS%", null), "TABLE_NAME");
    assertEquals(List.of("MSFT"), ms, "getTables(null, null, \"MS%\", null)");
    List<String> views =
        Jdbc.column(md.getTables(null, "NASDAQ", "%", new String[] {"VIEW"}), "TABLE_NAME");
    assertEquals(List.of(), views, "items are not views");
  }

  @Test
  void columnsOfAnItem() throws Exception {
    List<String> names = new ArrayList<>();
    List<Integer> types = new ArrayList<>();
    List<Integer> positions = new ArrayList<>();
    List<String> nullable = new ArrayList<>();
    try (ResultSet rs = md.getColumns(null, "NASDAQ", "AAPL", "%")) {
      while (rs.next()) {
        assertEquals("AAPL", rs.getString("TABLE_NAME"));
        names.add(rs.getString("COLUMN_NAME"));
        types.add(rs.getInt("DATA_TYPE"));
        positions.add(rs.getInt("ORDINAL_POSITION"));
        nullable.add(rs.getString("IS_NULLABLE"));
      }
    }
    assertEquals(List.of("ts", "price", "size", "side"), names);
    assertEquals(
        List.of(Types.TIMESTAMP_WITH_TIMEZONE, Types.DOUBLE, Types.DOUBLE, Types.TINYINT),
        types,
        "timestamp[ns, UTC], float64, float64, int8");
    assertEquals(List.of(1, 2, 3, 4), positions);
    assertEquals("NO", nullable.get(0), "ts was written non-nullable");
    assertEquals("YES", nullable.get(1), "price was written nullable");

    List<String> pattern = Jdbc.column(md.getColumns(null, "NASDAQ", "AAPL", "s%"), "COLUMN_NAME");
    assertEquals(List.of("size", "side"), pattern, "getColumns(..., \"s%\")");

    List<String> berlin =
        Jdbc.column(md.getColumns(null, "weather", "berlin/1D", null), "COLUMN_NAME");
    assertEquals(List.of("ts", "temp"), berlin, "getColumns of weather.\"berlin/1D\"");
  }

  private List<String> primaryKey(String item) throws Exception {
    List<Object[]> rows = new ArrayList<>();
    try (ResultSet rs = md.getPrimaryKeys(null, "NASDAQ", item)) {
      while (rs.next()) {
        assertEquals(item, rs.getString("TABLE_NAME"));
        assertEquals("NASDAQ", rs.getString("TABLE_SCHEM"));
        rows.add(new Object[] {rs.getInt("KEY_SEQ"), rs.getString("COLUMN_NAME")});
      }
    }
    rows.sort(Comparator.comparingInt(r -> (Integer) r[0]));
    List<String> columns = new ArrayList<>();
    for (int i = 0; i < rows.size(); i++) {
      assertEquals(i + 1, rows.get(i)[0], "KEY_SEQ of " + item + " counts from 1");
      columns.add((String) rows.get(i)[1]);
    }
    return columns;
  }

  @Test
  void primaryKeysAreTheOrderingColumnThenDedupOn() throws Exception {
    assertEquals(List.of("ts"), primaryKey("MSFT"), "MSFT: ordered on ts, dedup_on [ts]");
    assertEquals(
        List.of("ts", "side"), primaryKey("NVDA"), "NVDA: ordered on ts, dedup_on [ts, side]");
    assertEquals(List.of(), primaryKey("AAPL"), "AAPL declares no dedup_on");
  }

  @Test
  void foreignKeysAreEmpty() throws Exception {
    assertEquals(List.of(), Jdbc.column(md.getImportedKeys(null, "NASDAQ", "AAPL"), "FKTABLE_NAME"));
    assertEquals(List.of(), Jdbc.column(md.getExportedKeys(null, "NASDAQ", "AAPL"), "PKTABLE_NAME"));
    assertEquals(
        List.of(),
        Jdbc.column(
            md.getCrossReference(null, "NASDAQ", "AAPL", null, "NASDAQ", "MSFT"), "FKTABLE_NAME"));
  }

  @Test
  void tableTypes() throws Exception {
    List<String> types = Jdbc.column(md.getTableTypes(), "TABLE_TYPE");
    assertTrue(types.contains("BASE TABLE"), "getTableTypes(): " + types);
  }

  @Test
  void sqlInfoValues() throws Exception {
    assertEquals("Flightstore", md.getDatabaseProductName());
    String version = md.getDatabaseProductVersion();
    assertNotNull(version);
    assertFalse(version.isBlank(), "getDatabaseProductVersion() is blank");
    assertNotNull(md.getSQLKeywords(), "getSQLKeywords()");
    assertFalse(md.supportsTransactions(), "transactions: none");
    assertEquals(Connection.TRANSACTION_NONE, md.getDefaultTransactionIsolation());
    assertFalse(md.isReadOnly(), "not read-only");
    assertEquals("\"", md.getIdentifierQuoteString());
    // DBeaver reads these at connect (apache/arrow#40249).
    md.getNumericFunctions();
    md.getStringFunctions();
    md.getSystemFunctions();
    md.getTimeDateFunctions();
    for (int level :
        new int[] {
          Connection.TRANSACTION_NONE,
          Connection.TRANSACTION_READ_UNCOMMITTED,
          Connection.TRANSACTION_READ_COMMITTED,
          Connection.TRANSACTION_REPEATABLE_READ,
          Connection.TRANSACTION_SERIALIZABLE
        }) {
      md.supportsTransactionIsolationLevel(level);
    }
    md.supportsConvert(Types.INTEGER, Types.VARCHAR);
  }

  /**
   * Every scalar getter of DatabaseMetaData (boolean, int, long, String, no arguments) answers
   * without a RuntimeException. Most are GetSqlInfo ids the driver casts to Boolean, Long,
   * Integer (bitmasks), String or List; one missing or mistyped id breaks JDBC tools.
   */
  @Test
  void everyScalarGetterAnswers() throws Exception {
    List<Method> getters =
        Arrays.stream(DatabaseMetaData.class.getMethods())
            .filter(m -> m.getParameterCount() == 0)
            .filter(m -> !Modifier.isStatic(m.getModifiers()))
            .filter(
                m -> {
                  Class<?> t = m.getReturnType();
                  return t == boolean.class
                      || t == int.class
                      || t == long.class
                      || t == String.class;
                })
            .sorted(Comparator.comparing(Method::getName))
            .toList();
    List<String> broken = new ArrayList<>();
    for (Method m : getters) {
      try {
        m.invoke(md);
      } catch (InvocationTargetException e) {
        Throwable cause = e.getCause();
        if (cause instanceof SQLFeatureNotSupportedException) {
          continue;
        }
        broken.add(m.getName() + "(): " + cause);
      }
    }
    if (!broken.isEmpty()) {
      fail(
          broken.size()
              + " of "
              + getters.size()
              + " DatabaseMetaData getters failed (missing or mistyped GetSqlInfo ids):\n  "
              + String.join("\n  ", broken));
    }
  }
}
