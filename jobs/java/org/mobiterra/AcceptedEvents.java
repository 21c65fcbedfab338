package org.mobiterra;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import javax.crypto.Mac;
import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * The accepted events of a partition of good rows (the caller shuffles them by user id):
 * exact duplicates of (user_id, instant, cell_id) dropped and each user id replaced by its
 * pseudonym (UserKey's), computed once per user of the partition. The same rows as
 * jobs.ingest's dropDuplicates and user_key, without a hash aggregate of every event: a
 * partition's events are held in primitive arrays, bucketed by user and sorted per user by
 * (instant, cell), so duplicates are neighbours. Each partition comes out in that order.
 *
 * <p>Input rows: user_id (string), _ts_us (long, microseconds since the epoch), cell_id
 * (string), none null. Output rows: user_key, _ts_us, cell_id.
 */
public final class AcceptedEvents implements MapPartitionsFunction<Row, Row> {
  private static final long serialVersionUID = 1L;

  public static final StructType OUT =
      new StructType()
          .add("user_key", DataTypes.StringType, true)
          .add("_ts_us", DataTypes.LongType, true)
          .add("cell_id", DataTypes.StringType, true);

  private final String keyHex;

  public static Dataset<Row> apply(Dataset<Row> goodRows, String keyHex) {
    return goodRows.mapPartitions(new AcceptedEvents(keyHex), Encoders.row(OUT));
  }

  AcceptedEvents(String keyHex) {
    this.keyHex = keyHex;
  }

  @Override
  public Iterator<Row> call(Iterator<Row> rows) throws Exception {
    HashMap<String, Integer> userIds = new HashMap<>();
    ArrayList<String> users = new ArrayList<>();
    HashMap<String, Integer> cellIds = new HashMap<>();
    ArrayList<String> cells = new ArrayList<>();
    int n = 0;
    int[] user = new int[1024];
    long[] ts = new long[1024];
    int[] cell = new int[1024];
    while (rows.hasNext()) {
      Row r = rows.next();
      if (n == user.length) {
        user = Arrays.copyOf(user, 2 * n);
        ts = Arrays.copyOf(ts, 2 * n);
        cell = Arrays.copyOf(cell, 2 * n);
      }
      user[n] = PerUser.index(r.getString(0), userIds, users);
      ts[n] = r.getLong(1);
      cell[n] = PerUser.index(r.getString(2), cellIds, cells);
      n++;
    }
    int[] order = new int[n];
    int[] start = PerUser.bucket(user, n, users.size(), order);
    Mac mac = UserKey.mac(keyHex);
    int[] buffer = new int[Math.max(n, 1)];
    final long[] t = ts;
    final int[] c = cell;
    PerUser.Order byTime = (x, y) -> t[x] < t[y] || (t[x] == t[y] && c[x] < c[y]);
    for (int u = 0; u < users.size(); u++) {
      PerUser.sort(order, buffer, start[u], start[u + 1], byTime);
    }
    return new Rows(users, cells, start, order, ts, cell, mac);
  }

  /** The partition's rows in order, made one at a time, duplicates skipped. */
  private static final class Rows implements Iterator<Row> {
    private final List<String> users;
    private final List<String> cells;
    private final int[] start;
    private final int[] order;
    private final long[] ts;
    private final int[] cell;
    private final Mac mac;
    private int u = -1;
    private int i = 0;
    private String key;

    Rows(List<String> users, List<String> cells, int[] start, int[] order, long[] ts,
        int[] cell, Mac mac) {
      this.users = users;
      this.cells = cells;
      this.start = start;
      this.order = order;
      this.ts = ts;
      this.cell = cell;
      this.mac = mac;
    }

    @Override
    public boolean hasNext() {
      while (i < order.length) {
        if (u < 0 || i >= start[u + 1]) {
          u++;
          key = null;
          continue;
        }
        int e = order[i];
        if (i > start[u] && ts[e] == ts[order[i - 1]] && cell[e] == cell[order[i - 1]]) {
          i++; // an exact duplicate of the previous row
          continue;
        }
        return true;
      }
      return false;
    }

    @Override
    public Row next() {
      if (!hasNext()) {
        throw new java.util.NoSuchElementException();
      }
      if (key == null) {
        key = UserKey.pseudonym(mac, users.get(u));
      }
      int e = order[i++];
      return RowFactory.create(key, ts[e], cells.get(cell[e]));
    }
  }
}
