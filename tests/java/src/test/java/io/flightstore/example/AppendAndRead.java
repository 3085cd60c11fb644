package io.flightstore.example;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.arrow.flight.Action;
import org.apache.arrow.flight.Criteria;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightEndpoint;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.PutResult;
import org.apache.arrow.flight.Result;
import org.apache.arrow.flight.SyncPutListener;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.TimeStampNanoTZVector;
import org.apache.arrow.vector.TimeStampVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Writing to and reading from Flightstore with the plain Arrow Flight client for Java
 * ({@code org.apache.arrow:flight-core}): no Flightstore library is needed. Every request is a
 * small JSON document (the wire contract of the README), sent as a Flight command, ticket,
 * action body or ListFlights criteria; every answer is JSON too (parsed here with Jackson, which
 * flight-core already brings).
 *
 * <p>Run against a server on the default address: {@code flightstore serve}, then {@code main}.
 */
public final class AppendAndRead {
  private AppendAndRead() {}

  private static final ObjectMapper JSON = new ObjectMapper();

  /** One row of the example item: a trade tick. */
  public record Tick(long tsNanos, double price, String symbol) {
    public Instant ts() {
      return Instant.ofEpochSecond(0, tsNanos);
    }
  }

  /**
   * The item's columns. The first timestamp column ({@code ts}) is the ordering column; any
   * unit and time zone is accepted and kept as written (times compare in UTC).
   */
  public static final Schema SCHEMA =
      new Schema(
          List.of(
              new Field(
                  "ts",
                  new FieldType(false, new ArrowType.Timestamp(TimeUnit.NANOSECOND, "UTC"), null),
                  null),
              Field.nullable("price", new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE)),
              Field.nullable("symbol", ArrowType.Utf8.INSTANCE)));

  /**
   * {@code n} ticks, one per second from {@code from}, each time jittered by up to 0.9 s (so no
   * tick falls on a whole second), the price a random walk rounded to cents.
   */
  public static List<Tick> randomTicks(Random rnd, Instant from, int n, double startPrice) {
    List<String> symbols = List.of("BTC-USD", "ETH-USD", "SOL-USD");
    long t0 = toNanos(from);
    double price = startPrice;
    List<Tick> ticks = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      long jitter = 1 + rnd.nextInt(900_000_000);
      price = Math.round((price + rnd.nextGaussian() * 0.5) * 100.0) / 100.0;
      ticks.add(new Tick(t0 + i * 1_000_000_000L + jitter, price, symbols.get(rnd.nextInt(3))));
    }
    return ticks;
  }

  /**
   * Appends {@code ticks} to {@code collection/item} (created on first write) with DoPut and
   * returns the server's receipt: {@code {"version", "rows_received", "rows_written"}}.
   */
  public static JsonNode append(
      FlightClient client,
      BufferAllocator allocator,
      String collection,
      String item,
      List<Tick> ticks)
      throws Exception {
    // The descriptor is a WriteRequest: the item and the write mode (append, upsert,
    // overwrite, create, replace_range). A path descriptor, FlightDescriptor.path(collection,
    // item), appends too.
    ObjectNode writeRequest =
        JSON.createObjectNode()
            .put("collection", collection)
            .put("item", item)
            .put("mode", "append");
    FlightDescriptor descriptor = FlightDescriptor.command(JSON.writeValueAsBytes(writeRequest));

    try (VectorSchemaRoot root = VectorSchemaRoot.create(SCHEMA, allocator);
        SyncPutListener receipts = new SyncPutListener()) {
      FlightClient.ClientStreamListener upload = client.startPut(descriptor, root, receipts);
      // One record batch here; a large upload sends many (fill the root, putNext, repeat).
      TimeStampNanoTZVector ts = (TimeStampNanoTZVector) root.getVector("ts");
      Float8Vector price = (Float8Vector) root.getVector("price");
      VarCharVector symbol = (VarCharVector) root.getVector("symbol");
      root.allocateNew();
      for (int i = 0; i < ticks.size(); i++) {
        Tick t = ticks.get(i);
        ts.setSafe(i, t.tsNanos());
        price.setSafe(i, t.price());
        symbol.setSafe(i, t.symbol().getBytes(StandardCharsets.UTF_8));
      }
      root.setRowCount(ticks.size());
      upload.putNext();
      upload.completed();
      upload.getResult(); // waits for the commit; throws FlightRuntimeException if rejected

      // The receipt is the PutResult's app_metadata, a JSON object.
      try (PutResult result = receipts.read()) {
        if (result == null) {
          throw new IllegalStateException("the server sent no PutResult");
        }
        return JSON.readTree(bytes(result.getApplicationMetadata()));
      }
    }
  }

  /**
   * A ReadRequest: the rows of {@code [start, end)}, only {@code columns}. Times are ISO-8601
   * strings or integer nanoseconds since the epoch: {@code start} is sent as the first,
   * {@code end} as the second, to show both.
   */
  public static byte[] readRequest(
      String collection, String item, Instant start, Instant end, List<String> columns) {
    ObjectNode request =
        JSON.createObjectNode()
            .put("collection", collection)
            .put("item", item)
            .put("start", start.toString()) // e.g. "2024-01-02T14:30:05.123456789Z"
            .put("end", toNanos(end)); // e.g. 1704205805123456789
    columns.forEach(request.putArray("columns")::add);
    try {
      return JSON.writeValueAsBytes(request);
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalArgumentException(e);
    }
  }

  /**
   * DoGet of one ticket: a ticket from a FlightInfo, or a ReadRequest made by the client. The
   * batches arrive in time order. A column the stream does not carry reads as null.
   */
  public static List<Tick> read(FlightClient client, Ticket ticket) throws Exception {
    List<Tick> rows = new ArrayList<>();
    try (FlightStream stream = client.getStream(ticket)) {
      while (stream.next()) { // the root is reused: copy each batch out before the next
        VectorSchemaRoot root = stream.getRoot();
        TimeStampVector ts = (TimeStampVector) root.getVector("ts");
        FieldVector price = root.getVector("price");
        FieldVector symbol = root.getVector("symbol");
        for (int i = 0; i < root.getRowCount(); i++) {
          rows.add(
              new Tick(
                  ts.get(i),
                  price == null ? Double.NaN : ((Float8Vector) price).get(i),
                  symbol == null || symbol.isNull(i) ? null : symbol.getObject(i).toString()));
        }
      }
    }
    return rows;
  }

  /**
   * GetFlightInfo with a ReadRequest command (or a path descriptor for the whole item), then
   * DoGet of every endpoint's ticket, in order. The tickets are pinned to one version, so the
   * read is consistent even while writes continue. The endpoints carry no location: fetch them
   * on the same connection.
   */
  public static List<Tick> readAll(FlightClient client, FlightDescriptor descriptor)
      throws Exception {
    FlightInfo info = client.getInfo(descriptor);
    List<Tick> rows = new ArrayList<>();
    for (FlightEndpoint endpoint : info.getEndpoints()) {
      rows.addAll(read(client, endpoint.getTicket()));
    }
    return rows;
  }

  /** The {@code list_items} action: the names of the items of {@code collection}. */
  public static List<String> listItems(FlightClient client, String collection) throws Exception {
    byte[] body = JSON.writeValueAsBytes(JSON.createObjectNode().put("collection", collection));
    List<String> names = new ArrayList<>();
    client
        .doAction(new Action("list_items", body))
        .forEachRemaining(
            (Result r) -> {
              try {
                JSON.readTree(r.getBody()).forEach(name -> names.add(name.asText()));
              } catch (java.io.IOException e) {
                throw new IllegalStateException(e);
              }
            });
    return names;
  }

  /**
   * ListFlights: one FlightInfo per item of {@code collection} (or of every collection when
   * null), with its path descriptor, schema, rows, bytes, and app_metadata JSON {@code
   * {"start", "end", "version", "metadata"}}.
   */
  public static List<FlightInfo> listFlights(FlightClient client, String collection)
      throws Exception {
    Criteria criteria =
        collection == null
            ? Criteria.ALL
            : new Criteria(
                JSON.writeValueAsBytes(JSON.createObjectNode().put("collection", collection)));
    List<FlightInfo> infos = new ArrayList<>();
    client.listFlights(criteria).forEach(infos::add);
    return infos;
  }

  /** Nanoseconds since the epoch, the unit of times in Flightstore's answers. */
  public static long toNanos(Instant t) {
    return Math.addExact(Math.multiplyExact(t.getEpochSecond(), 1_000_000_000L), t.getNano());
  }

  private static byte[] bytes(ArrowBuf buf) {
    byte[] out = new byte[(int) buf.readableBytes()];
    buf.getBytes(buf.readerIndex(), out);
    return out;
  }

  /** Appends two minutes of ticks, then reads the last minute back. Args: [grpc://host:port]. */
  public static void main(String[] args) throws Exception {
    Location location = new Location(args.length > 0 ? args[0] : "grpc://127.0.0.1:8815");
    try (BufferAllocator allocator = new RootAllocator();
        FlightClient client = FlightClient.builder(allocator, location).build()) {
      Instant from = Instant.now().minus(Duration.ofMinutes(2));
      List<Tick> ticks = randomTicks(new Random(), from, 120, 100.0);
      System.out.println(append(client, allocator, "example", "ticks", ticks));

      Instant start = from.plus(Duration.ofMinutes(1));
      byte[] request = readRequest("example", "ticks", start, Instant.now(), List.of("ts", "price"));
      for (Tick t : read(client, new Ticket(request))) {
        System.out.println(t.ts() + " " + t.price());
      }
      System.out.println(listItems(client, "example"));
    }
  }
}
