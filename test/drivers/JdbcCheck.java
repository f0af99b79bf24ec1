// PostgreSQL JDBC through openproxy. Past prepareThreshold (5) a PreparedStatement runs as a named
// server statement (S_1, …); where openproxy cannot keep named statements (transaction mode
// without its cache) the driver runs with prepareThreshold=0, as PgBouncer users run it.
// args: port mode routing(0/1) named(0/1) pool_size who. Prints OK or throws.
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcCheck {
  static void check(boolean ok, String what) { if (!ok) throw new RuntimeException(what); }

  public static void main(String[] args) throws Exception {
    boolean routing = args[2].equals("1"), named = args[3].equals("1");
    int poolSize = Integer.parseInt(args[4]);
    String who = args[5];
    String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/postgres?connectTimeout=20&socketTimeout=30&prepareThreshold=" + (named ? 5 : 0);
    ExecutorService pool = Executors.newFixedThreadPool(poolSize + 3);
    List<Future<?>> jobs = new ArrayList<>();
    for (int t = 0; t < poolSize + 3; t++) {
      final int id = t;
      jobs.add(pool.submit(() -> {
        try (Connection c = DriverManager.getConnection(url, "app", "app-secret")) {
          try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT pg_is_in_recovery()")) {
            rs.next();
            check(rs.getBoolean(1) == routing, "read ran on the wrong kind of server");
          }
          try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 3")) {
            for (int k = 0; k < 15; k++) {
              ps.setInt(1, id * 100 + k);
              try (ResultSet rs = ps.executeQuery()) { rs.next(); check(rs.getInt(1) == (id * 100 + k) * 3, "wrong result"); }
            }
          }
          try (PreparedStatement ps = c.prepareStatement("SELECT g, md5(g::text) FROM generate_series(1, ?) g")) {
            ps.setInt(1, 20000);
            int n = 0;
            try (ResultSet rs = ps.executeQuery()) { while (rs.next()) n++; }
            check(n == 20000, "large result cut short: " + n);
          }
          try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?")) {
            ps.setInt(1, 0);
            try { ps.executeQuery(); check(false, "division by zero did not fail"); }
            catch (SQLException e) { check("22012".equals(e.getSQLState()), "wrong error " + e.getSQLState()); }
          }
          // A batch of reads in one round trip (several Syncs' worth of Bind/Execute).
          try (PreparedStatement ps = c.prepareStatement("SELECT ?::text")) {
            for (int k = 0; k < 8; k++) {
              ps.setString(1, "v" + k);
              try (ResultSet rs = ps.executeQuery()) { rs.next(); check(rs.getString(1).equals("v" + k), "wrong text"); }
            }
          }
        }
        return null;
      }));
    }
    for (Future<?> f : jobs) f.get(60, TimeUnit.SECONDS);
    pool.shutdown();
    try (Connection c = DriverManager.getConnection(url, "app", "app-secret")) {
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO matrix_t (who, v) VALUES (?, ?)")) {
        ps.setString(1, who); ps.setInt(2, 1); ps.executeUpdate();
        c.rollback();
        for (int k = 0; k < 3; k++) { ps.setString(1, who); ps.setInt(2, 2); ps.addBatch(); }
        ps.executeBatch();
        c.commit();
      }
      c.setAutoCommit(true);
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*), sum(v) FROM matrix_t WHERE who = ?")) {
        ps.setString(1, who);
        try (ResultSet rs = ps.executeQuery()) { rs.next(); check(rs.getInt(1) == 3 && rs.getInt(2) == 6, "own writes not read back: " + rs.getInt(1)); }
      }
    }
    // A session that reads first (with routing: on a replica) and then writes, in autocommit.
    try (Connection c = DriverManager.getConnection(url, "app", "app-secret")) {
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM matrix_t")) { rs.next(); }
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO matrix_t (who, v) VALUES (?, 3)")) { ps.setString(1, who + "-rw"); ps.executeUpdate(); }
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM matrix_t WHERE who = ?")) {
        ps.setString(1, who + "-rw");
        try (ResultSet rs = ps.executeQuery()) { rs.next(); check(rs.getInt(1) == 1, "read-then-write session lost its write"); }
      }
    }
    System.out.println("OK");
  }
}
