// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against sluice's Postgres
// endpoint: what Metabase's sync reads (DatabaseMetaData.getTables, getColumns and
// getPrimaryKeys), a prepared
// statement run past prepareThreshold (the driver then prepares it on the server and reads
// results in binary), and every type. Run by tests/it/sql.rs as
// `java -cp postgresql.jar JdbcCheck.java <port> <rows>`; exits 1 with a message on the
// first difference.
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class JdbcCheck {
    static void check(String what, Object got, Object want) {
        if (!Objects.equals(got, want)) {
            System.err.println(what + ": got " + got + ", want " + want);
            System.exit(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/sluice?user=sluice&sslmode=disable";
        long rows = Long.parseLong(args[1]);
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData meta = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "raw", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
            }
            check("getTables(raw)", tables.contains("raw.src"), true);
            // getColumns: what Metabase's sync maps field types from.
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "raw", "src", "%")) {
                while (rs.next()) {
                    columns.add(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
                            + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE") + " "
                            + rs.getString("IS_NULLABLE"));
                    if (rs.getString("COLUMN_NAME").equals("amount")) {
                        check("amount's precision", rs.getInt("COLUMN_SIZE"), 12);
                        check("amount's scale", rs.getInt("DECIMAL_DIGITS"), 2);
                    }
                }
            }
            check("getColumns(raw.src)", columns, List.of(
                    "1 id int8 " + Types.BIGINT + " YES",
                    "2 name text " + Types.VARCHAR + " YES",
                    "3 amount numeric " + Types.NUMERIC + " YES",
                    "4 _sluice_batch int8 " + Types.BIGINT + " YES",
                    "5 _sluice_ingested_at timestamptz " + Types.TIMESTAMP + " YES",
                    "6 _sluice_source text " + Types.VARCHAR + " YES",
                    "7 _sluice_file text " + Types.VARCHAR + " YES",
                    "8 _sluice_line int8 " + Types.BIGINT + " YES"));
            try (ResultSet rs = meta.getPrimaryKeys(null, "raw", "src")) {
                check("raw tables have no primary key", rs.next(), false);
            }

            try (PreparedStatement ps = c.prepareStatement("SELECT name, amount FROM raw.src WHERE id = ?")) {
                for (int i = 1; i <= 8; i++) {
                    ps.setLong(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check("prepared run " + i + " has a row", rs.next(), true);
                        check("prepared run " + i, rs.getString(1), "name " + i);
                        check("prepared amount " + i, rs.getBigDecimal(2),
                                new BigDecimal(String.format("%d.%02d", i % 1000, i % 100)));
                    }
                }
            }
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM raw.src")) {
                rs.next();
                check("count", rs.getLong(1), rows);
            }

            String types = "SELECT true AS b, 7::SMALLINT AS i2, 7::INTEGER AS i4, 7::BIGINT AS i8, "
                    + "12.34::DECIMAL(10,2) AS d, 1.5::FLOAT AS f4, 2.25::DOUBLE AS f8, 'x' AS t, "
                    + "DATE '2024-02-29' AS dt, TIMESTAMP '2024-02-29 13:14:15.25' AS ts, "
                    + "'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID AS u, '\\x01'::BLOB AS by, NULL::INTEGER AS n";
            // Eight runs: the later ones are server-prepared, with binary results.
            for (int run = 1; run <= 8; run++) {
                try (PreparedStatement ps = c.prepareStatement(types); ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    String tag = " (run " + run + ")";
                    check("bool" + tag, rs.getBoolean("b"), true);
                    check("int2" + tag, rs.getShort("i2"), (short) 7);
                    check("int4" + tag, rs.getInt("i4"), 7);
                    check("int8" + tag, rs.getLong("i8"), 7L);
                    check("numeric" + tag, rs.getBigDecimal("d"), new BigDecimal("12.34"));
                    check("float4" + tag, rs.getFloat("f4"), 1.5f);
                    check("float8" + tag, rs.getDouble("f8"), 2.25);
                    check("text" + tag, rs.getString("t"), "x");
                    check("date" + tag, rs.getDate("dt").toString(), "2024-02-29");
                    check("timestamp" + tag, rs.getTimestamp("ts").toString(), "2024-02-29 13:14:15.25");
                    check("uuid" + tag, rs.getObject("u").toString(), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
                    check("bytea" + tag, Arrays.toString(rs.getBytes("by")), "[1]");
                    rs.getInt("n");
                    check("null" + tag, rs.wasNull(), true);
                    ResultSetMetaData md = rs.getMetaData();
                    check("type of d" + tag, md.getColumnTypeName(5), "numeric");
                    check("type of ts" + tag, md.getColumnTypeName(10), "timestamp");
                }
            }
            try (Statement st = c.createStatement()) {
                st.executeQuery("DELETE FROM raw.src");
                check("a DELETE ran", true, false);
            } catch (SQLException e) {
                check("DELETE refused with", e.getSQLState(), "25006");
            }
        }
        System.out.println("ok");
    }
}
