// The PostgreSQL JDBC driver against a raw table whose schema changes while a statement
// prepared on the server (run past prepareThreshold, results read in binary) is held:
// getColumns shows the new column once its batch commits, and the held statement then
// returns rows of the new shape, never of the old one. Run by tests/it/schema_change.rs
// as `java -cp postgresql.jar JdbcSchemaChange.java <port> <inbox>`; prints what it saw.
import java.nio.file.*;
import java.sql.*;
import java.util.*;

public class JdbcSchemaChange {
    static List<String> columns(Connection c) throws SQLException {
        List<String> out = new ArrayList<>();
        try (ResultSet rs = c.getMetaData().getColumns(null, "raw", "src", "%")) {
            while (rs.next()) {
                String name = rs.getString("COLUMN_NAME");
                if (!name.startsWith("_sluice_")) out.add(name + " " + rs.getString("TYPE_NAME"));
            }
        }
        return out;
    }

    static String run(PreparedStatement ps) {
        try (ResultSet rs = ps.executeQuery()) {
            ResultSetMetaData md = rs.getMetaData();
            StringBuilder sb = new StringBuilder("cols=" + md.getColumnCount());
            while (rs.next()) {
                sb.append(" [").append(rs.getLong("id")).append(" ").append(rs.getString("amount"));
                if (md.getColumnCount() > 7) sb.append(" ").append(rs.getString("region"));
                sb.append("]");
            }
            return sb.toString();
        } catch (SQLException e) {
            return "error " + e.getSQLState() + " " + e.getMessage();
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/sluice?user=sluice&sslmode=disable";
        try (Connection c = DriverManager.getConnection(url)) {
            System.out.println("before: " + columns(c));
            PreparedStatement ps = c.prepareStatement("SELECT * FROM raw.src ORDER BY id");
            String before = "";
            for (int i = 0; i < 7; i++) before = run(ps);
            System.out.println("held: " + before);
            Files.writeString(Paths.get(args[1], "b.csv"), "id,amount,region\n3,2.5,north\n");
            long deadline = System.currentTimeMillis() + 60_000;
            while (!columns(c).toString().contains("region")) {
                if (System.currentTimeMillis() > deadline) {
                    System.out.println("region never appeared");
                    System.exit(1);
                }
                Thread.sleep(50);
            }
            System.out.println("after: " + columns(c));
            System.out.println("held: " + run(ps));
            System.out.println("held: " + run(ps));
        }
    }
}
