package io.flightstore.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The JDBC driver against a server with an auth file: users log in with user and password
 * (the driver's Basic Handshake), tokens work, wrong or missing credentials are refused, and
 * grants decide which collections a query may read.
 */
class AuthTest {
  private static FlightstoreServer server;
  private static String token;

  /** Run {@code flightstore ARGS}, writing {@code stdin} to it; its stdout. */
  private static String cli(String stdin, String... args) throws Exception {
    List<String> command = new java.util.ArrayList<>();
    command.add(FlightstoreServer.binary().toString());
    command.addAll(List.of(args));
    Process p = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    try (OutputStream in = p.getOutputStream()) {
      in.write(stdin.getBytes(StandardCharsets.UTF_8));
    }
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS));
    assertEquals(0, p.exitValue(), "flightstore " + command);
    return out.trim();
  }

  @BeforeAll
  static void start() throws Exception {
    Path auth = Files.createTempDirectory("flightstore-auth-").resolve("auth.json");
    token = cli("", "token", "create", "--auth-file", auth.toString(), "--name", "bi",
        "--grant", "*:read");
    cli("s3cret pass\n", "user", "add", "--auth-file", auth.toString(), "--name", "alice",
        "--grant", "NASDAQ:read", "--password-stdin");
    server = FlightstoreServer.start("flightstore-auth-server.log", "--auth-file", auth.toString());
  }

  @AfterAll
  static void stop() throws Exception {
    if (server != null) {
      server.close();
    }
  }

  private static String url() {
    return "jdbc:arrow-flight-sql://" + server.host() + ":" + server.port()
        + "/?useEncryption=false";
  }

  @Test
  void userAndPasswordLogInThroughHandshake() throws Exception {
    String url = url() + "&user=alice&password=s3cret%20pass";
    try (Connection conn = DriverManager.getConnection(url)) {
      assertEquals(1, Jdbc.scalarLong(conn, "SELECT 1"));
      // A collection alice may not read: refused, not "not found".
      SQLException e = assertThrows(SQLException.class,
          () -> Jdbc.scalarLong(conn, "SELECT count(*) FROM EOD.x"));
      assertTrue(String.valueOf(e.getMessage()).contains("may not read"), e.toString());
    }
  }

  @Test
  void aTokenWorks() throws Exception {
    try (Connection conn = DriverManager.getConnection(url() + "&token=" + token)) {
      assertEquals(1, Jdbc.scalarLong(conn, "SELECT 1"));
    }
  }

  @Test
  void wrongOrMissingCredentialsAreRefused() {
    assertThrows(SQLException.class, () -> {
      try (Connection conn =
          DriverManager.getConnection(url() + "&user=alice&password=wrong")) {
        Jdbc.scalarLong(conn, "SELECT 1");
      }
    });
    assertThrows(SQLException.class, () -> {
      try (Connection conn = DriverManager.getConnection(url())) {
        Jdbc.scalarLong(conn, "SELECT 1");
      }
    });
    assertThrows(SQLException.class, () -> {
      try (Connection conn = DriverManager.getConnection(url() + "&token=fst_nope")) {
        Jdbc.scalarLong(conn, "SELECT 1");
      }
    });
  }
}
