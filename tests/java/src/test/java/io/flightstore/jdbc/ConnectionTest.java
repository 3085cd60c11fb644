package io.flightstore.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.sql.Connection;
import java.sql.DriverManager;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Connecting the three ways the JDBC driver can: no credentials, user/password, token. */
@ExtendWith(Flightstore.Extension.class)
class ConnectionTest {
  private final Flightstore fs;

  ConnectionTest(Flightstore fs) {
    this.fs = fs;
  }

  @Test
  void withoutCredentials() throws Exception {
    try (Connection conn = fs.connect()) {
      assertEquals(1, Jdbc.scalarLong(conn, "SELECT 1"));
      assertEquals(
          fs.seed.aapl.size(), Jdbc.scalarLong(conn, "SELECT count(*) FROM NASDAQ.AAPL"));
    }
  }

  /** user=any&password=any: the driver sends a Basic Handshake and then uses the Bearer reply. */
  @Test
  void withUserAndPasswordThroughHandshake() throws Exception {
    try (Connection conn = fs.connectWithPassword()) {
      assertEquals(
          fs.seed.aapl.size(), Jdbc.scalarLong(conn, "SELECT count(*) FROM NASDAQ.AAPL"));
      // A second call on the same connection carries the token from the Handshake.
      assertEquals(1, Jdbc.scalarLong(conn, "SELECT 1"));
      conn.getMetaData().getCatalogs().close();
    }
  }

  /** token=...: the driver sends a Handshake with that Bearer token (no auth file: any works). */
  @Test
  void withTokenThroughHandshake() throws Exception {
    try (Connection conn = DriverManager.getConnection(fs.url() + "&token=any-token")) {
      assertEquals(
          fs.seed.aapl.size(), Jdbc.scalarLong(conn, "SELECT count(*) FROM NASDAQ.AAPL"));
    }
  }
}
