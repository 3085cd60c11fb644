package io.flightstore.jdbc;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The real {@code flightstore serve} binary on a free port of 127.0.0.1, with its data in a
 * temporary folder. Its stderr is drained by a thread into {@code target/flightstore-server.log}
 * (and the last lines are kept for failure messages).
 */
public final class FlightstoreServer implements AutoCloseable {
  private static final Pattern ADDR = Pattern.compile("addr=(\\S+)");
  private static final Pattern ANSI = Pattern.compile("\u001B\\[[0-9;]*m");
  private static final int TAIL_LINES = 200;

  private final Process process;
  private final Path data;
  private final String host;
  private final int port;
  private final Deque<String> tail = new ArrayDeque<>();
  private final Thread drainer;

  private FlightstoreServer(
      Process process, Path data, String host, int port, BufferedReader stderr, PrintWriter log) {
    this.process = process;
    this.data = data;
    this.host = host;
    this.port = port;
    this.drainer =
        new Thread(
            () -> {
              try (stderr;
                  log) {
                String line;
                while ((line = stderr.readLine()) != null) {
                  remember(line);
                  log.println(line);
                  log.flush();
                }
              } catch (IOException e) {
                remember("(reading the server's stderr failed: " + e + ")");
              }
            },
            "flightstore-stderr");
    this.drainer.setDaemon(true);
    this.drainer.start();
    // If the JVM stops without closing us (a crash, Ctrl-C), do not leave the server running.
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  if (process.isAlive()) {
                    process.toHandle().destroy();
                  }
                },
                "flightstore-stop"));
  }

  /** The binary: {@code $FLIGHTSTORE_BIN}, else the repository's debug build. */
  static Path binary() {
    String env = System.getenv("FLIGHTSTORE_BIN");
    Path bin =
        env != null && !env.isEmpty()
            ? Paths.get(env)
            : Paths.get("..", "..", "target", "debug", "flightstore");
    if (!Files.isExecutable(bin)) {
      throw new IllegalStateException(
          "no flightstore binary at "
              + bin.toAbsolutePath()
              + ": set FLIGHTSTORE_BIN (cargo test sets it) or run `cargo build` first");
    }
    return bin.toAbsolutePath();
  }

  static FlightstoreServer start() throws IOException, InterruptedException {
    return start("flightstore-server.log");
  }

  /** A server logging to {@code target/<logName>}, with {@code extra} serve flags. */
  public static FlightstoreServer start(String logName, String... extra)
      throws IOException, InterruptedException {
    Path bin = binary();
    Path data = Files.createTempDirectory("flightstore-jdbc-");
    Path logFile = Paths.get("target", logName);
    Files.createDirectories(logFile.getParent());
    List<String> command = new ArrayList<>(
        List.of(bin.toString(), "serve", "--data", data.toString(), "--bind", "127.0.0.1:0"));
    command.addAll(List.of(extra));
    ProcessBuilder pb = new ProcessBuilder(command);
    pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
    pb.redirectError(ProcessBuilder.Redirect.PIPE);
    pb.environment().putIfAbsent("NO_COLOR", "1");
    Process process = pb.start();
    BufferedReader stderr =
        new BufferedReader(
            new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8));
    PrintWriter log = new PrintWriter(Files.newBufferedWriter(logFile, StandardCharsets.UTF_8));

    // Read lines until the server says where it listens (on another thread, to bound the wait).
    List<String> seen = java.util.Collections.synchronizedList(new ArrayList<>());
    CompletableFuture<String> addr =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                String line;
                while ((line = stderr.readLine()) != null) {
                  seen.add(line);
                  log.println(line);
                  Matcher m = ADDR.matcher(ANSI.matcher(line).replaceAll(""));
                  if (m.find()) {
                    return m.group(1);
                  }
                }
                return null;
              } catch (IOException e) {
                return null;
              }
            });
    String address;
    try {
      address = addr.get(60, TimeUnit.SECONDS);
    } catch (TimeoutException | java.util.concurrent.ExecutionException e) {
      address = null;
    }
    if (address == null) {
      process.destroyForcibly();
      String so;
      synchronized (seen) {
        so = String.join("\n", seen);
      }
      throw new IllegalStateException(
          "the server did not report its address (a line with addr=HOST:PORT) within 60 s; its"
              + " stderr so far:\n"
              + so);
    }
    int colon = address.lastIndexOf(':');
    String host = address.substring(0, colon);
    int port = Integer.parseInt(address.substring(colon + 1));
    FlightstoreServer server = new FlightstoreServer(process, data, host, port, stderr, log);
    for (String line : seen) {
      server.remember(line);
    }
    return server;
  }

  private synchronized void remember(String line) {
    if (tail.size() == TAIL_LINES) {
      tail.removeFirst();
    }
    tail.addLast(line);
  }

  /** The last lines the server logged (for failure messages). */
  synchronized String logTail() {
    return String.join("\n", tail);
  }

  public String host() {
    return host;
  }

  public int port() {
    return port;
  }

  boolean isAlive() {
    return process.isAlive();
  }

  /**
   * SIGTERM, then wait; a clean shutdown exits 0. Sent through the ProcessHandle: Process.destroy()
   * would also close our end of the server's stderr, and the server's shutdown log lines would
   * then hit a closed pipe.
   */
  @Override
  public void close() throws Exception {
    try {
      process.toHandle().destroy();
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
        throw new IllegalStateException(
            "the server did not stop within 30 s of SIGTERM; last log lines:\n" + logTail());
      }
      drainer.join(5_000);
      int code = process.exitValue();
      if (code != 0) {
        throw new IllegalStateException(
            "the server exited with status " + code + " on SIGTERM; last log lines:\n" + logTail());
      }
    } finally {
      try (Stream<Path> files = Files.walk(data)) {
        files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      } catch (IOException e) {
        // A temporary folder left behind is not a test failure.
      }
    }
  }
}
