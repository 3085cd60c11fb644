package io.flightstore.jdbc;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.function.Predicate;
import org.apache.arrow.flight.AsyncPutListener;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.Location;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.TimeStampNanoTZVector;
import org.apache.arrow.vector.TinyIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The data the tests seed with the plain Arrow Flight client (DoPut), kept here so that every
 * expected answer is computed from what was written.
 */
final class Seed {
  /** One seeded row of a trades item. */
  record Trade(long tsNanos, double price, double size, byte side) {
    Instant ts() {
      return Instant.ofEpochSecond(0, tsNanos);
    }
  }

  /** One seeded row of the weather item. */
  record Reading(long tsNanos, double temp) {}

  /** Where the seeded trades start: 2024-01-02T14:30:00Z, one row a second (plus jitter). */
  static final Instant T0 = Instant.parse("2024-01-02T14:30:00Z");

  static final long SECOND = 1_000_000_000L;

  /** NASDAQ.AAPL: read-only for the tests. */
  final List<Trade> aapl;
  /** NASDAQ.TSLA: the target of INSERT and DELETE. */
  final List<Trade> tsla;
  /** NASDAQ.MSFT: created with dedup_on ["ts"]. */
  final List<Trade> msft;
  /** NASDAQ.NVDA: created with dedup_on ["ts", "side"]. */
  final List<Trade> nvda;
  /** weather."berlin/1D" (path descriptor ["weather", "berlin", "1D"]). */
  final List<Reading> berlin;

  private Seed(
      List<Trade> aapl,
      List<Trade> tsla,
      List<Trade> msft,
      List<Trade> nvda,
      List<Reading> berlin) {
    this.aapl = aapl;
    this.tsla = tsla;
    this.msft = msft;
    this.nvda = nvda;
    this.berlin = berlin;
  }

  static final Schema TRADES =
      new Schema(
          List.of(
              new Field(
                  "ts",
                  new FieldType(
                      false, new ArrowType.Timestamp(TimeUnit.NANOSECOND, "UTC"), null),
                  null),
              Field.nullable("price", new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE)),
              Field.nullable("size", new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE)),
              Field.nullable("side", new ArrowType.Int(8, true))));

  static final Schema READINGS =
      new Schema(
          List.of(
              new Field(
                  "ts",
                  new FieldType(
                      false, new ArrowType.Timestamp(TimeUnit.NANOSECOND, "UTC"), null),
                  null),
              Field.nullable("temp", new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE))));

  /**
   * Trades one a second from {@link #T0}, each jittered by up to 0.9 s (with nanosecond digits),
   * so row i lies in [T0 + i s, T0 + i s + 0.9 s): strictly increasing, never on a whole second.
   */
  static List<Trade> trades(int n, long randomSeed) {
    Random rnd = new Random(randomSeed);
    long t0 = T0.getEpochSecond() * SECOND;
    double price = 185.0;
    List<Trade> rows = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      long jitter = 1 + rnd.nextInt(900_000_000);
      price = Math.round((price + rnd.nextGaussian() * 0.25) * 100.0) / 100.0;
      double size = 1 + rnd.nextInt(1000);
      byte side = rnd.nextBoolean() ? (byte) 1 : (byte) -1;
      rows.add(new Trade(t0 + i * SECOND + jitter, price, size, side));
    }
    return Collections.unmodifiableList(rows);
  }

  static List<Reading> readings(int days) {
    List<Reading> rows = new ArrayList<>(days);
    long t0 = Instant.parse("2024-01-01T00:00:00Z").getEpochSecond() * SECOND;
    for (int d = 0; d < days; d++) {
      rows.add(new Reading(t0 + d * 86_400L * SECOND, -2.0 + 0.5 * d));
    }
    return Collections.unmodifiableList(rows);
  }

  /** Writes every seeded item to the server at host:port. */
  static Seed write(String host, int port) throws Exception {
    Seed seed =
        new Seed(trades(300, 42), trades(200, 7), trades(100, 11), trades(50, 13), readings(30));
    try (BufferAllocator allocator = new RootAllocator();
        FlightClient client =
            FlightClient.builder(allocator, Location.forGrpcInsecure(host, port)).build()) {
      putTrades(client, allocator, FlightDescriptor.path("NASDAQ", "AAPL"), seed.aapl);
      putTrades(client, allocator, FlightDescriptor.path("NASDAQ", "TSLA"), seed.tsla);
      putTrades(
          client,
          allocator,
          command("{\"collection\":\"NASDAQ\",\"item\":\"MSFT\",\"mode\":\"create\","
              + "\"dedup_on\":[\"ts\"]}"),
          seed.msft);
      putTrades(
          client,
          allocator,
          command("{\"collection\":\"NASDAQ\",\"item\":\"NVDA\",\"mode\":\"create\","
              + "\"dedup_on\":[\"ts\",\"side\"]}"),
          seed.nvda);
      putReadings(client, allocator, FlightDescriptor.path("weather", "berlin", "1D"), seed.berlin);
    }
    return seed;
  }

  private static FlightDescriptor command(String json) {
    return FlightDescriptor.command(json.getBytes(StandardCharsets.UTF_8));
  }

  /** Uploads the rows in two record batches. */
  private static void putTrades(
      FlightClient client, BufferAllocator allocator, FlightDescriptor descriptor, List<Trade> rows) {
    try (VectorSchemaRoot root = VectorSchemaRoot.create(TRADES, allocator)) {
      FlightClient.ClientStreamListener put =
          client.startPut(descriptor, root, new AsyncPutListener());
      int half = rows.size() / 2;
      for (List<Trade> part : List.of(rows.subList(0, half), rows.subList(half, rows.size()))) {
        root.allocateNew();
        TimeStampNanoTZVector ts = (TimeStampNanoTZVector) root.getVector("ts");
        Float8Vector price = (Float8Vector) root.getVector("price");
        Float8Vector size = (Float8Vector) root.getVector("size");
        TinyIntVector side = (TinyIntVector) root.getVector("side");
        for (int i = 0; i < part.size(); i++) {
          Trade t = part.get(i);
          ts.setSafe(i, t.tsNanos());
          price.setSafe(i, t.price());
          size.setSafe(i, t.size());
          side.setSafe(i, t.side());
        }
        root.setRowCount(part.size());
        put.putNext();
      }
      put.completed();
      put.getResult();
    }
  }

  private static void putReadings(
      FlightClient client,
      BufferAllocator allocator,
      FlightDescriptor descriptor,
      List<Reading> rows) {
    try (VectorSchemaRoot root = VectorSchemaRoot.create(READINGS, allocator)) {
      FlightClient.ClientStreamListener put =
          client.startPut(descriptor, root, new AsyncPutListener());
      root.allocateNew();
      TimeStampNanoTZVector ts = (TimeStampNanoTZVector) root.getVector("ts");
      Float8Vector temp = (Float8Vector) root.getVector("temp");
      for (int i = 0; i < rows.size(); i++) {
        ts.setSafe(i, rows.get(i).tsNanos());
        temp.setSafe(i, rows.get(i).temp());
      }
      root.setRowCount(rows.size());
      put.putNext();
      put.completed();
      put.getResult();
    }
  }

  /** The rows of {@code rows} that pass {@code keep}, in order. */
  static List<Trade> where(List<Trade> rows, Predicate<Trade> keep) {
    return rows.stream().filter(keep).toList();
  }

  static long nanos(Instant t) {
    return t.getEpochSecond() * SECOND + t.getNano();
  }
}
