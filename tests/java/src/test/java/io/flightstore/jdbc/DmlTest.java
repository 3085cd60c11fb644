package io.flightstore.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flightstore.jdbc.Seed.Trade;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * INSERT and DELETE through Statement.executeUpdate: the driver prepares the statement, sees an
 * empty dataset schema (its signal for an update) and sends DoPut(CommandPreparedStatementUpdate).
 * They change NASDAQ.TSLA only (the other items stay as seeded for the other tests), in disjoint
 * time ranges, so they hold in either order.
 */
@ExtendWith(Flightstore.Extension.class)
class DmlTest {
  private static final String TABLE = "NASDAQ.TSLA";
  private final Flightstore fs;
  private Connection conn;

  DmlTest(Flightstore fs) {
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

  private long count() throws Exception {
    return Jdbc.scalarLong(conn, "SELECT count(*) FROM " + TABLE);
  }

  @Test
  void insertAfterTheEndAppendsOneRow() throws Exception {
    Instant seededEnd = fs.seed.tsla.get(fs.seed.tsla.size() - 1).ts();
    Instant at = Instant.parse("2024-01-02T15:00:00Z");
    assertTrue(at.isAfter(seededEnd));
    long before = count();
    String sql = "INSERT INTO " + TABLE + " VALUES (TIMESTAMP '" + at + "', 1.0, 2.0, 1)";
    try (Statement st = conn.createStatement()) {
      assertEquals(1, st.executeUpdate(sql), sql);
    }
    assertEquals(before + 1, count(), "count(*) after " + sql);

    String check =
        "SELECT ts, price, size, side FROM " + TABLE + " WHERE ts = TIMESTAMP '" + at + "'";
    try (Statement st = conn.createStatement();
        ResultSet rs = st.executeQuery(check)) {
      assertTrue(rs.next(), check);
      assertEquals(at, rs.getObject(1, Instant.class));
      assertEquals(1.0, rs.getDouble(2));
      assertEquals(2.0, rs.getDouble(3));
      assertEquals(1, rs.getByte(4));
      assertFalse(rs.next(), check);
    }
  }

  /**
   * A PreparedStatement INSERT with parameters (a tool's row editor does this). The driver sends
   * it down the query path (GetFlightInfo(CommandPreparedStatementQuery) after the parameters'
   * DoPut), which must execute the DML too.
   */
  @Test
  void preparedInsertWithParameters() throws Exception {
    Instant at = Instant.parse("2024-01-02T15:10:00Z");
    long before = count();
    String sql = "INSERT INTO " + TABLE + " VALUES (TIMESTAMP '" + at + "', ?, ?, 1)";
    long updated;
    try (java.sql.PreparedStatement ps = conn.prepareStatement(sql)) {
      ps.setDouble(1, 3.5);
      ps.setDouble(2, 7.0);
      updated = ps.executeUpdate();
    }
    assertEquals(
        before + 1, count(), "count(*) after " + sql + " (executeUpdate gave " + updated + ")");
    String check = "SELECT price, size FROM " + TABLE + " WHERE ts = TIMESTAMP '" + at + "'";
    try (Statement st = conn.createStatement();
        ResultSet rs = st.executeQuery(check)) {
      assertTrue(rs.next(), check);
      assertEquals(3.5, rs.getDouble(1));
      assertEquals(7.0, rs.getDouble(2));
      assertFalse(rs.next(), check);
    }
    assertEquals(1, updated, "executeUpdate() of " + sql);
  }

  @Test
  void deleteByTimeRangeReturnsTheRowsDeleted() throws Exception {
    Instant start = Seed.T0.plusSeconds(50);
    Instant end = Seed.T0.plusSeconds(70);
    List<Trade> inRange =
        Seed.where(
            fs.seed.tsla, t -> t.tsNanos() >= Seed.nanos(start) && t.tsNanos() < Seed.nanos(end));
    assertEquals(20, inRange.size());
    long before = count();
    String range = "ts >= TIMESTAMP '" + start + "' AND ts < TIMESTAMP '" + end + "'";
    String sql = "DELETE FROM " + TABLE + " WHERE " + range;
    try (Statement st = conn.createStatement()) {
      assertEquals(inRange.size(), st.executeUpdate(sql), "rows deleted by " + sql);
    }
    assertEquals(before - inRange.size(), count(), "count(*) after " + sql);
    assertEquals(
        0,
        Jdbc.scalarLong(conn, "SELECT count(*) FROM " + TABLE + " WHERE " + range),
        "rows left in the deleted range");
    // The neighbours stay.
    Instant justBefore = fs.seed.tsla.get(49).ts();
    Instant justAfter = fs.seed.tsla.get(70).ts();
    assertEquals(
        2,
        Jdbc.scalarLong(
            conn,
            "SELECT count(*) FROM "
                + TABLE
                + " WHERE ts = TIMESTAMP '"
                + justBefore
                + "' OR ts = TIMESTAMP '"
                + justAfter
                + "'"),
        "the rows either side of the deleted range");
  }
}
