// pgjdbc against a running flashsql server: what a Java service and a JDBC-based BI tool
// (DBeaver, Metabase) do. Run by tests/it/clients.rs as a single-file program:
//   java -cp postgresql.jar JdbcClient.java jdbc:postgresql://host:port/flashsql
// Exits non-zero with a message on the first failure; prints "jdbc: ok" at the end.

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAILED: " + what);
            System.exit(1);
        }
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(name));
        rs.close();
        return out;
    }

    static long count(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "flashsql");
        props.setProperty("sslmode", "disable");
        // The driver's default: the 5th execution of a statement switches it to a named
        // server-side statement with binary parameters and results.
        props.setProperty("prepareThreshold", "5");
        try (Connection c = DriverManager.getConnection(System.getenv("FLASHSQL_JDBC_URL"), props)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), "product name");

            // A prepared statement run past prepareThreshold: values stay right in binary.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT ?::bigint + 1 AS n, ?::numeric(12,4) AS price, ?::timestamp AS ts, segment "
                            + "FROM users WHERE user_id = ?")) {
                Timestamp ts = Timestamp.valueOf("2026-11-30 12:34:56.789");
                for (int i = 1; i <= 10; i++) {
                    ps.setLong(1, i);
                    ps.setBigDecimal(2, new BigDecimal("1234.5678"));
                    ps.setTimestamp(3, ts);
                    ps.setLong(4, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "prepared run " + i + " returned no row");
                        check(rs.getLong("n") == i + 1, "bigint at run " + i + ": " + rs.getLong("n"));
                        check(rs.getBigDecimal("price").compareTo(new BigDecimal("1234.5678")) == 0,
                                "numeric at run " + i + ": " + rs.getBigDecimal("price"));
                        check(rs.getTimestamp("ts").equals(ts), "timestamp at run " + i + ": " + rs.getTimestamp("ts"));
                        check(rs.getString("segment") != null, "text at run " + i);
                    }
                }
            }

            // setFetchSize inside a transaction: the driver reads through a named portal in
            // batches, across Sync messages.
            long expected;
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM events")) {
                rs.next();
                expected = rs.getLong(1);
            }
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.setFetchSize(500);
                long rows = 0;
                try (ResultSet rs = st.executeQuery("SELECT user_id, item_id FROM events")) {
                    while (rs.next()) rows++;
                }
                check(rows == expected, "fetch-size read " + rows + " rows of " + expected);
            }
            c.commit();
            c.setAutoCommit(true);

            try (Statement st = c.createStatement()) {
                st.execute("CREATE VIEW jdbc_new_users AS SELECT user_id FROM users WHERE segment = 'new'");
            }

            // What DBeaver and Metabase call on connecting and browsing.
            List<String> tables = column(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME");
            check(tables.containsAll(List.of("users", "items", "events")), "getTables: " + tables);
            check(!tables.contains("jdbc_new_users"), "a view listed as a table: " + tables);
            List<String> views = column(md.getTables(null, "public", "%", new String[] {"VIEW"}), "TABLE_NAME");
            check(views.contains("jdbc_new_users"), "getTables(VIEW): " + views);

            Map<String, String> types = new HashMap<>();
            try (ResultSet rs = md.getColumns(null, "public", "events", "%")) {
                while (rs.next()) types.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
            }
            check("int8".equals(types.get("user_id")), "getColumns user_id: " + types);
            check(types.containsKey("ts") && types.get("ts").startsWith("timestamp"), "getColumns ts: " + types);

            check(column(md.getPrimaryKeys(null, "public", "events"), "COLUMN_NAME").isEmpty(), "getPrimaryKeys");
            check(column(md.getImportedKeys(null, "public", "events"), "FKCOLUMN_NAME").isEmpty(), "getImportedKeys");
            check(column(md.getIndexInfo(null, "public", "events", false, true), "INDEX_NAME").isEmpty(), "getIndexInfo");
            List<String> typeNames = column(md.getTypeInfo(), "TYPE_NAME");
            check(typeNames.containsAll(List.of("int8", "float8", "text", "timestamp")), "getTypeInfo: " + typeNames.size());
            check(column(md.getSchemas(), "TABLE_SCHEM").contains("public"), "getSchemas");
            check(column(md.getCatalogs(), "TABLE_CAT").contains("flashsql"), "getCatalogs");
            check(column(md.getTableTypes(), "TABLE_TYPE").contains("VIEW"), "getTableTypes");

            // Errors arrive with their SQLSTATE.
            try (Statement st = c.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_table");
                check(false, "no error for a missing table");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "missing table SQLSTATE " + e.getSQLState());
            }
        }
        // Transactions as a Java service drives them: setAutoCommit(false), commit, rollback,
        // a savepoint, and SQLSTATE 40001 when another session rewrote the table first.
        try (Connection a = DriverManager.getConnection(System.getenv("FLASHSQL_JDBC_URL"), props);
             Connection b = DriverManager.getConnection(System.getenv("FLASHSQL_JDBC_URL"), props)) {
            try (Statement st = b.createStatement()) {
                st.execute("CREATE TABLE jdbc_plan (item_id BIGINT, discount DOUBLE PRECISION)");
                st.execute("INSERT INTO jdbc_plan VALUES (1, 0.1), (2, 0.2)");
            }
            a.setAutoCommit(false);
            try (Statement st = a.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_plan VALUES (3, 0.3)");
                java.sql.Savepoint sp = a.setSavepoint("before_update");
                st.executeUpdate("UPDATE jdbc_plan SET discount = 0.9");
                a.rollback(sp);
                check(count(b, "SELECT count(*) FROM jdbc_plan") == 2, "uncommitted rows seen by b");
                a.commit();
                check(count(b, "SELECT count(*) FROM jdbc_plan WHERE discount < 0.5") == 3, "commit and savepoint");
                st.executeUpdate("DELETE FROM jdbc_plan WHERE item_id = 3");
                a.rollback();
                check(count(b, "SELECT count(*) FROM jdbc_plan") == 3, "rollback");
                st.executeUpdate("UPDATE jdbc_plan SET discount = 0.5 WHERE item_id = 1");
                try (Statement other = b.createStatement()) {
                    other.executeUpdate("DELETE FROM jdbc_plan WHERE item_id = 2");
                }
                try {
                    a.commit();
                    check(false, "a lost race committed");
                } catch (SQLException e) {
                    check("40001".equals(e.getSQLState()), "lost race SQLSTATE " + e.getSQLState());
                }
                st.executeUpdate("INSERT INTO jdbc_plan VALUES (4, 0.4)");
                a.commit();
                check(count(b, "SELECT count(*) FROM jdbc_plan") == 3, "a transaction after the lost race");
            }
        }
        System.out.println("jdbc: ok");
    }
}
