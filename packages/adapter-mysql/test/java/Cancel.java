import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;

/**
 * Connector/J's Statement.cancel() through Gatehouse: runs args[1] on a
 * connection to args[0] (a JDBC URL) in another thread, cancels it when a
 * line arrives on stdin, and prints how the statement ended.
 */
public class Cancel {
  public static void main(String[] args) throws Exception {
    try (Connection c = DriverManager.getConnection(args[0])) {
      Statement s = c.createStatement();
      Thread running =
          new Thread(
              () -> {
                try {
                  s.executeQuery(args[1]).close();
                  System.out.println("finished");
                } catch (SQLException e) {
                  System.out.println("interrupted " + e.getErrorCode() + " " + e.getMessage());
                }
              });
      running.start();
      System.out.println("started");
      new BufferedReader(new InputStreamReader(System.in)).readLine();
      s.cancel();
      running.join();
      try (Statement after = c.createStatement()) {
        after.executeQuery("SELECT 1").close();
        System.out.println("connection still usable");
      }
    }
  }
}
