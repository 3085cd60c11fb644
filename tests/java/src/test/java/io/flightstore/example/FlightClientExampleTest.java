package io.flightstore.example;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.flightstore.example.AppendAndRead.Tick;
import io.flightstore.jdbc.FlightstoreServer;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The Java example ({@link AppendAndRead}) against the real server: two appends with DoPut and a
 * WriteRequest command, a range read with DoGet of a client-made ReadRequest ticket, a read
 * through GetFlightInfo and its endpoints, and the inventory through the {@code list_items}
 * action and ListFlights. Every expected answer is computed from the rows written.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class FlightClientExampleTest {
  private static final String COLLECTION = "CRYPTO";
  private static final String ITEM = "ticks";
  private static final Instant T0 = Instant.parse("2024-01-02T14:30:00Z");
  private static final ObjectMapper JSON = new ObjectMapper();

  private FlightstoreServer server;
  private BufferAllocator allocator;
  private FlightClient client;

  /** The rows of the two appends: the second continues in time where the first stops. */
  private List<Tick> first;
  private List<Tick> second;
  private List<Tick> all;
  private JsonNode receipt1;
  private JsonNode receipt2;

  @BeforeAll
  void appendTwice() throws Exception {
    server = FlightstoreServer.start("flightstore-example-server.log");
    allocator = new RootAllocator();
    client = FlightClient.builder(allocator, Location.forGrpcInsecure(server.host(), server.port()))
        .build();
    Random rnd = new Random(20240102);
    first = AppendAndRead.randomTicks(rnd, T0, 600, 42_000.0);
    second =
        AppendAndRead.randomTicks(
            rnd, T0.plusSeconds(first.size()), 400, first.get(first.size() - 1).price());
    all = new ArrayList<>(first);
    all.addAll(second);
    receipt1 = AppendAndRead.append(client, allocator, COLLECTION, ITEM, first);
    receipt2 = AppendAndRead.append(client, allocator, COLLECTION, ITEM, second);
  }

  @AfterAll
  void stop() throws Exception {
    try {
      if (client != null) {
        client.close();
      }
      if (allocator != null) {
        allocator.close(); // fails if a buffer leaked
      }
    } finally {
      if (server != null) {
        server.close(); // fails unless the server stops cleanly on SIGTERM
      }
    }
  }

  @Test
  void appendReturnsReceipts() {
    assertEquals(1, receipt1.path("version").asLong(-1), "first receipt: " + receipt1);
    assertEquals(first.size(), receipt1.path("rows_received").asLong(-1), "receipt: " + receipt1);
    assertEquals(first.size(), receipt1.path("rows_written").asLong(-1), "receipt: " + receipt1);
    assertEquals(2, receipt2.path("version").asLong(-1), "second receipt: " + receipt2);
    assertEquals(second.size(), receipt2.path("rows_received").asLong(-1), "receipt: " + receipt2);
    assertEquals(second.size(), receipt2.path("rows_written").asLong(-1), "receipt: " + receipt2);
  }

  /**
   * [start, end) from exactly the timestamp of one row (included) to exactly that of another
   * (excluded), across the boundary of the two appends; only ts and price.
   */
  @Test
  void doGetWithReadRequestTicket() throws Exception {
    Instant start = all.get(123).ts();
    Instant end = all.get(777).ts();
    byte[] request =
        AppendAndRead.readRequest(COLLECTION, ITEM, start, end, List.of("ts", "price"));
    List<Tick> got = AppendAndRead.read(client, new Ticket(request));

    List<Tick> expected =
        all.subList(123, 777).stream()
            .map(t -> new Tick(t.tsNanos(), t.price(), null)) // symbol not asked for
            .toList();
    assertEquals(654, expected.size());
    assertRows(expected, got);
  }

  /** GetFlightInfo with a ReadRequest command, then DoGet of each endpoint's ticket. */
  @Test
  void getFlightInfoWithReadRequestThenDoGet() throws Exception {
    Instant start = T0.plusSeconds(300); // between rows: row 300 is at T0 + 300 s + jitter
    Instant end = T0.plusSeconds(900);
    byte[] request =
        AppendAndRead.readRequest(COLLECTION, ITEM, start, end, List.of("ts", "price", "symbol"));
    FlightDescriptor descriptor = FlightDescriptor.command(request);

    FlightInfo info = client.getInfo(descriptor);
    List<Tick> expected = all.subList(300, 900);
    assertEquals(List.of("ts", "price", "symbol"), names(info.getSchema()));
    assertEquals(AppendAndRead.SCHEMA.getFields().get(0).getType(),
        info.getSchema().getFields().get(0).getType(), "the ts type is kept as written");
    assertTrue(info.getOrdered(), "endpoints of a time-ordered read are ordered");
    assertFalse(info.getEndpoints().isEmpty(), "no endpoint in " + info);
    // Exact when the manifest knows it, -1 when a partial file decides (the README's rule).
    assertTrue(
        info.getRecords() == expected.size() || info.getRecords() == -1,
        "total_records " + info.getRecords() + ", expected " + expected.size() + " or -1");

    assertRows(expected, AppendAndRead.readAll(client, descriptor));

    // The whole item by its path: both appends, in order.
    assertRows(all, AppendAndRead.readAll(client, FlightDescriptor.path(COLLECTION, ITEM)));
  }

  @Test
  void listItemsAndListFlights() throws Exception {
    assertEquals(List.of(ITEM), AppendAndRead.listItems(client, COLLECTION));

    for (String collection : new String[] {COLLECTION, null}) { // that collection, then all
      List<FlightInfo> infos = AppendAndRead.listFlights(client, collection);
      FlightInfo info =
          infos.stream()
              .filter(f -> !f.getDescriptor().isCommand())
              .filter(f -> f.getDescriptor().getPath().equals(List.of(COLLECTION, ITEM)))
              .findFirst()
              .orElse(null);
      assertNotNull(info, "no " + COLLECTION + "/" + ITEM + " in ListFlights " + infos);
      assertEquals(all.size(), info.getRecords());
      assertEquals(names(AppendAndRead.SCHEMA), names(info.getSchema()));
      JsonNode meta = JSON.readTree(info.getAppMetadata());
      assertEquals(2, meta.path("version").asLong(-1), "app_metadata: " + meta);
      assertEquals(all.get(0).tsNanos(), meta.path("start").asLong(-1), "app_metadata: " + meta);
      assertEquals(
          all.get(all.size() - 1).tsNanos(), meta.path("end").asLong(-1), "app_metadata: " + meta);
    }
  }

  /**
   * An "append" of late, unsorted rows inside the stored range: none is dropped or rejected,
   * and a read returns every row in time order (DESIGN: "merged into their place in order").
   */
  @Test
  void lateUnsortedAppendIsMergedInOrder() throws Exception {
    String collection = "LATE";
    String item = "ticks";
    List<Tick> onTime = AppendAndRead.randomTicks(new Random(1), T0, 200, 100.0);
    // Rows at T0 + i s + 0.95 s for i in [50, 150): between stored rows (their jitter is at
    // most 0.9 s), sent in a shuffled order.
    List<Tick> late = new ArrayList<>();
    for (int i = 50; i < 150; i++) {
      late.add(new Tick(
          AppendAndRead.toNanos(T0.plusSeconds(i).plusMillis(950)), 200.0 + i, "LATE"));
    }
    java.util.Collections.shuffle(late, new Random(2));

    AppendAndRead.append(client, allocator, collection, item, onTime);
    JsonNode receipt = AppendAndRead.append(client, allocator, collection, item, late);
    assertEquals(late.size(), receipt.path("rows_written").asLong(-1), "receipt: " + receipt);

    List<Tick> expected = new ArrayList<>(onTime);
    expected.addAll(late);
    expected.sort(java.util.Comparator.comparingLong(Tick::tsNanos));
    assertRows(expected, AppendAndRead.readAll(client, FlightDescriptor.path(collection, item)));
  }

  /** Same rows, same order; on a mismatch, names the first differing row. */
  private static void assertRows(List<Tick> expected, List<Tick> got) {
    for (int i = 0; i < Math.min(expected.size(), got.size()); i++) {
      assertEquals(expected.get(i), got.get(i), "row " + i);
    }
    assertEquals(expected.size(), got.size(), "row count");
  }

  private static List<String> names(Schema schema) {
    return schema.getFields().stream().map(Field::getName).toList();
  }
}
