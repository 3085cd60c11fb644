package io.flightstore.jdbc;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.Properties;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * One server and one seeded data set for the whole run: a JUnit extension that starts them on
 * first use (kept in the root store, so they are stopped once, after the last test class) and
 * injects this object into test constructors or methods.
 */
final class Flightstore implements AutoCloseable {
  final FlightstoreServer server;
  final Seed seed;

  private Flightstore(FlightstoreServer server, Seed seed) {
    this.server = server;
    this.seed = seed;
  }

  private static Flightstore start() {
    FlightstoreServer server;
    try {
      server = FlightstoreServer.start();
    } catch (Exception e) {
      throw new IllegalStateException("cannot start the flightstore server: " + e, e);
    }
    try {
      return new Flightstore(server, Seed.write(server.host(), server.port()));
    } catch (Exception e) {
      String tail = server.logTail();
      try {
        server.close();
      } catch (Exception ignored) {
        // The seeding error is the one to report.
      }
      throw new IllegalStateException(
          "cannot seed the server with the Flight client: " + e + "\nserver log:\n" + tail, e);
    }
  }

  /** The JDBC URL of the server, without credentials (no Handshake). */
  String url() {
    return "jdbc:arrow-flight-sql://" + server.host() + ":" + server.port() + "/?useEncryption=false";
  }

  /** A connection without credentials: the driver makes no Handshake. */
  Connection connect() throws SQLException {
    return DriverManager.getConnection(url(), new Properties());
  }

  /** A connection with user and password: the driver makes a Basic-auth Handshake first. */
  Connection connectWithPassword() throws SQLException {
    return DriverManager.getConnection(url() + "&user=any&password=any");
  }

  @Override
  public void close() throws Exception {
    server.close();
  }

  /** The extension: {@code @ExtendWith(Flightstore.Extension.class)}. */
  static final class Extension implements BeforeAllCallback, ParameterResolver {
    private static final ExtensionContext.Namespace NS =
        ExtensionContext.Namespace.create(Flightstore.class);

    private static Flightstore get(ExtensionContext context) {
      return context
          .getRoot()
          .getStore(NS)
          .getOrComputeIfAbsent("flightstore", k -> Flightstore.start(), Flightstore.class);
    }

    @Override
    public void beforeAll(ExtensionContext context) {
      get(context);
    }

    @Override
    public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
      return parameter.getParameter().getType() == Flightstore.class;
    }

    @Override
    public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
      return get(context);
    }
  }
}
