package io.flightstore.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import io.flightstore.jdbc.Seed.Trade;
import java.sql.Connection;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * PreparedStatement with {@code ?} parameters: CreatePreparedStatement, DoPut of the parameters
 * (the handle is stateless: the server may hand back an updated one), GetFlightInfo, DoGet; each
 * statement executed twice with different values.
 */
@ExtendWith(Flightstore.Extension.class)
class PreparedStatementTest {
  private final Flightstore fs;
  private Connection conn;

  PreparedStatementTest(Flightstore fs) {
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

  private double priceQuantile(double q) {
    List<Double> sorted = fs.seed.aapl.stream().map(Trade::price).sorted().toList();
    return sorted.get((int) (q * (sorted.size() - 1)));
  }

  @Test
  void priceGreaterThanDoubleParameterTwice() throws Exception {
    String sql = "SELECT ts, price FROM NASDAQ.AAPL WHERE price > ? ORDER BY ts";
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      ParameterMetaData pmd = ps.getParameterMetaData();
      assertEquals(1, pmd.getParameterCount(), "parameter schema of " + sql);
      assertEquals(Types.DOUBLE, pmd.getParameterType(1), "the type of `price > ?` is float64");
      for (double threshold : new double[] {priceQuantile(0.5), priceQuantile(0.8)}) {
        List<Trade> expected = Seed.where(fs.seed.aapl, t -> t.price() > threshold);
        ps.setDouble(1, threshold);
        List<Instant> gotTs = new ArrayList<>();
        List<Double> gotPrice = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            gotTs.add(rs.getObject(1, Instant.class));
            gotPrice.add(rs.getDouble(2));
          }
        }
        assertEquals(
            expected.stream().map(Trade::ts).toList(), gotTs, sql + " with ? = " + threshold);
        assertEquals(
            expected.stream().map(Trade::price).toList(), gotPrice, sql + " with ? = " + threshold);
      }
    }
  }

  /**
   * Timestamp parameters bound with setTimestamp, as a Java program or DBeaver binds them.
   *
   * <p>Note on the driver (18.3.0, unchanged at arrow-java HEAD): its
   * TimestampAvaticaParameterConverter writes Avatica's value, epoch <em>milliseconds</em>,
   * unconverted into whatever timestamp vector the server's parameter schema asks for. So this
   * works only if the server announces such a parameter as timestamp[ms] (DataFusion infers
   * timestamp[ns, UTC] from {@code ts >= ?}); with [ns] the bound instant lands in January 1970.
   */
  @Test
  void timestampRangeParametersTwice() throws Exception {
    String sql = "SELECT count(*), min(ts) FROM NASDAQ.AAPL WHERE ts >= ? AND ts < ?";
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      ParameterMetaData pmd = ps.getParameterMetaData();
      assertEquals(2, pmd.getParameterCount(), "parameter schema of " + sql);
      long[][] ranges = {{100, 150}, {10, 20}};
      for (long[] r : ranges) {
        Instant start = Seed.T0.plusSeconds(r[0]);
        Instant end = Seed.T0.plusSeconds(r[1]);
        List<Trade> expected =
            Seed.where(
                fs.seed.aapl,
                t -> t.tsNanos() >= Seed.nanos(start) && t.tsNanos() < Seed.nanos(end));
        ps.setTimestamp(1, Timestamp.from(start));
        ps.setTimestamp(2, Timestamp.from(end));
        try (ResultSet rs = ps.executeQuery()) {
          if (!rs.next()) {
            fail("no row from " + sql);
          }
          long count = rs.getLong(1);
          Instant min = rs.getObject(2, Instant.class);
          String what = sql + " with [" + start + ", " + end + ")";
          if (count == 0 && !expected.isEmpty()) {
            fail(
                what
                    + ": 0 rows, expected "
                    + expected.size()
                    + ". Parameter types announced: "
                    + pmd.getParameterTypeName(1)
                    + ", "
                    + pmd.getParameterTypeName(2)
                    + ". The JDBC driver writes setTimestamp values as epoch milliseconds into"
                    + " the announced vector unconverted (TimestampAvaticaParameterConverter), so"
                    + " a timestamp[ns] parameter receives an instant in January 1970; the server"
                    + " should announce timestamp parameters as timestamp[ms] (or [ms, tz]).");
          }
          assertEquals(expected.size(), count, what);
          assertEquals(expected.get(0).ts(), min, what);
        }
      }
    }
  }

  @Test
  void doubleAndIntParametersTogether() throws Exception {
    String sql = "SELECT count(*) FROM NASDAQ.AAPL WHERE price > ? AND side = ?";
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      assertEquals(2, ps.getParameterMetaData().getParameterCount(), "parameter schema of " + sql);
      double threshold = priceQuantile(0.3);
      for (int side : new int[] {1, -1}) {
        ps.setDouble(1, threshold);
        ps.setInt(2, side);
        long expected =
            fs.seed.aapl.stream().filter(t -> t.price() > threshold && t.side() == side).count();
        try (ResultSet rs = ps.executeQuery()) {
          if (!rs.next()) {
            fail("no row from " + sql);
          }
          assertEquals(expected, rs.getLong(1), sql + " with " + threshold + ", " + side);
        }
      }
    }
  }

  /** A prepared statement without parameters (what every Statement becomes in this driver). */
  @Test
  void preparedWithoutParametersTwice() throws Exception {
    String sql = "SELECT count(*) FROM NASDAQ.MSFT";
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      for (int i = 0; i < 2; i++) {
        try (ResultSet rs = ps.executeQuery()) {
          if (!rs.next()) {
            fail("no row from " + sql);
          }
          assertEquals(fs.seed.msft.size(), rs.getLong(1), sql);
        }
      }
    }
  }
}
