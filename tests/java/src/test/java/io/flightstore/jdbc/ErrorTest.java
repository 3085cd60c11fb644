package io.flightstore.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Errors reach the JDBC caller as SQLException, promptly, with the server's message and code. */
@ExtendWith(Flightstore.Extension.class)
class ErrorTest {
  private final Flightstore fs;
  private Connection conn;

  ErrorTest(Flightstore fs) {
    this.fs = fs;
  }

  @BeforeEach
  void open() throws Exception {
    conn = fs.connect();
  }

  @AfterEach
  void close() throws Exception {
    conn.close();
  }

  private SQLException query(String sql) {
    return assertThrows(
        SQLException.class,
        () -> {
          try (Statement st = conn.createStatement()) {
            st.executeQuery(sql).close();
          }
        },
        sql);
  }

  private SQLException update(String sql) {
    return assertThrows(
        SQLException.class,
        () -> {
          try (Statement st = conn.createStatement()) {
            st.executeUpdate(sql);
          }
        },
        sql);
  }

  /**
   * The gRPC status code in the cause chain (the driver's Flight classes are shaded, so found by
   * name), or null.
   */
  static String grpcCode(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t.getClass().getName().endsWith("FlightRuntimeException")) {
        try {
          Object status = t.getClass().getMethod("status").invoke(t);
          return String.valueOf(status.getClass().getMethod("code").invoke(status));
        } catch (ReflectiveOperationException ignored) {
          return null;
        }
      }
    }
    return null;
  }

  /** Every message in the cause chain, without the SQL text that the driver echoes. */
  static String serverMessage(Throwable e, String sql) {
    StringBuilder sb = new StringBuilder();
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t.getMessage() != null) {
        sb.append(t.getMessage().replace(sql, "<sql>")).append(" / ");
      }
    }
    return sb.toString();
  }

  @Test
  void syntaxErrorIsASqlExceptionNotAHang() throws Exception {
    String sql = "SELEC price FRM NASDAQ.AAPL";
    SQLException e = query(sql);
    assertEquals("INVALID_ARGUMENT", grpcCode(e), serverMessage(e, sql));
    // The connection stays usable.
    assertEquals(1, Jdbc.scalarLong(conn, "SELECT 1"));
  }

  @Test
  void unknownTableIsASqlExceptionNamingIt() throws Exception {
    String sql = "SELECT * FROM NASDAQ.NOPE";
    SQLException e = query(sql);
    String message = serverMessage(e, sql);
    assertTrue(message.contains("NOPE"), "the server's message does not name NOPE: " + message);
    assertEquals("NOT_FOUND", grpcCode(e), message);
  }

  @Test
  void unknownCollectionIsASqlExceptionNamingIt() throws Exception {
    String sql = "SELECT * FROM NOWHERE.AAPL";
    SQLException e = query(sql);
    String message = serverMessage(e, sql);
    assertTrue(
        message.contains("NOWHERE"), "the server's message does not name NOWHERE: " + message);
    assertEquals("NOT_FOUND", grpcCode(e), message);
  }

  @Test
  void unknownColumnIsInvalidArgument() throws Exception {
    String sql = "SELECT nope FROM NASDAQ.AAPL";
    SQLException e = query(sql);
    assertEquals("INVALID_ARGUMENT", grpcCode(e), serverMessage(e, sql));
  }

  /** Only INSERT and DELETE of an ordering-column range are supported; nothing else changes. */
  @Test
  void unsupportedDmlIsRejectedAndChangesNothing() throws Exception {
    String table = "NASDAQ.NVDA";
    long rows = fs.seed.nvda.size();
    for (String sql :
        new String[] {
          "UPDATE " + table + " SET price = 0",
          "DELETE FROM " + table + " WHERE price > 0",
          "CREATE TABLE NASDAQ.NEWONE (ts TIMESTAMP, x DOUBLE)",
        }) {
      SQLException e = update(sql);
      assertEquals("INVALID_ARGUMENT", grpcCode(e), sql + ": " + serverMessage(e, sql));
      assertEquals(rows, Jdbc.scalarLong(conn, "SELECT count(*) FROM " + table), "after " + sql);
    }
  }
}
