// PostgreSQL JDBC past its prepareThreshold (5): the 6th execution of a PreparedStatement uses a
// named server statement (S_1, …). Several connections share fewer server connections.
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcCheck {
  public static void main(String[] args) throws Exception {
    String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/postgres";
    ExecutorService pool = Executors.newFixedThreadPool(5);
    List<Future<?>> jobs = new ArrayList<>();
    for (int t = 0; t < 5; t++) {
      final int id = t;
      jobs.add(pool.submit(() -> {
        try (Connection c = DriverManager.getConnection(url, "app", "app-secret")) {
          try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 3")) {
            for (int k = 0; k < 15; k++) {
              ps.setInt(1, id * 100 + k);
              try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                if (rs.getInt(1) != (id * 100 + k) * 3) throw new RuntimeException("wrong result");
              }
            }
          }
          c.setAutoCommit(false);
          try (PreparedStatement ps = c.prepareStatement("SELECT ?::text")) {
            for (int k = 0; k < 8; k++) {
              ps.setString(1, "v" + k);
              try (ResultSet rs = ps.executeQuery()) { rs.next(); if (!rs.getString(1).equals("v" + k)) throw new RuntimeException("wrong text"); }
            }
          }
          c.commit();
        }
        return null;
      }));
    }
    for (Future<?> f : jobs) f.get();
    pool.shutdown();
    System.out.println("OK");
  }
}
