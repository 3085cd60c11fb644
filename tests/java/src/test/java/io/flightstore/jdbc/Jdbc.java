package io.flightstore.jdbc;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

/** Small JDBC helpers for the tests. */
final class Jdbc {
  private Jdbc() {}

  /** The single value of a one-row, one-column query, as a long. */
  static long scalarLong(Connection conn, String sql) throws SQLException {
    try (Statement st = conn.createStatement();
        ResultSet rs = st.executeQuery(sql)) {
      if (!rs.next()) {
        throw new AssertionError("no row from " + sql);
      }
      long value = rs.getLong(1);
      if (rs.next()) {
        throw new AssertionError("more than one row from " + sql);
      }
      return value;
    }
  }

  /** Every row of a result set, each as a list of getObject values. */
  static List<List<Object>> rows(ResultSet rs) throws SQLException {
    ResultSetMetaData md = rs.getMetaData();
    List<List<Object>> rows = new ArrayList<>();
    while (rs.next()) {
      List<Object> row = new ArrayList<>();
      for (int c = 1; c <= md.getColumnCount(); c++) {
        row.add(rs.getObject(c));
      }
      rows.add(row);
    }
    return rows;
  }

  /** The values of one String column of a metadata result set, by column label. */
  static List<String> column(ResultSet rs, String label) throws SQLException {
    List<String> values = new ArrayList<>();
    try (rs) {
      while (rs.next()) {
        values.add(rs.getString(label));
      }
    }
    return values;
  }

  /** The whole of a result set as text (for failure messages). */
  static String dump(ResultSet rs) throws SQLException {
    ResultSetMetaData md = rs.getMetaData();
    StringBuilder sb = new StringBuilder();
    for (int c = 1; c <= md.getColumnCount(); c++) {
      sb.append(c > 1 ? " | " : "").append(md.getColumnLabel(c));
    }
    sb.append('\n');
    while (rs.next()) {
      for (int c = 1; c <= md.getColumnCount(); c++) {
        sb.append(c > 1 ? " | " : "").append(rs.getString(c));
      }
      sb.append('\n');
    }
    return sb.toString();
  }
}
