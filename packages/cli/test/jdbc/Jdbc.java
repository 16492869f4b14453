import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;

/**
 * Runs one query through a JDBC URL and prints the first row, tab-separated:
 * `java -cp DRIVER.jar Jdbc.java URL SQL` (source-file mode, JDK 11+). The
 * CLI tests use it to connect pgjdbc and MariaDB Connector/J with the URL and
 * key files `gatehouse db login` writes.
 */
public class Jdbc {
  public static void main(String[] args) throws Exception {
    try (Connection c = DriverManager.getConnection(args[0]);
        ResultSet rs = c.createStatement().executeQuery(args[1])) {
      rs.next();
      StringBuilder row = new StringBuilder();
      for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
        if (i > 1) row.append('\t');
        row.append(rs.getString(i));
      }
      System.out.println(row);
    }
  }
}
