package org.mobiterra;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * Stays of each user's events in one pass per partition: the same rules, in the same order,
 * as jobs.stays.stays_from_located's window functions (segments, their collapse, the
 * sandwiched passes and handovers, merge, short stays, merge), without Spark's sort of every
 * event by (user, time): a partition's events are held in primitive arrays, bucketed by user
 * and sorted per user.
 *
 * <p>Input rows (the partition holds all events of its users: the caller repartitions by
 * user): user_key (string), _ts_us (long, microseconds since the epoch), h3_id (long), and
 * optionally _site (long, nullable). Output rows: user_key, stay_h3, _start_us, _end_us.
 */
public final class Stays implements MapPartitionsFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  private static final long NO_SITE = Long.MIN_VALUE;
  private static final long MICROS = 1_000_000L;

  public static final StructType OUT =
      new StructType()
          .add("user_key", DataTypes.StringType, false)
          .add("stay_h3", DataTypes.LongType, false)
          .add("_start_us", DataTypes.LongType, false)
          .add("_end_us", DataTypes.LongType, false);

  private final long gapS;
  private final long minTimeS;
  private final int handoverMaxEvents;
  private final long placeKeep;
  private final long placeOr;
  private final boolean hasSite;

  /**
   * The stays of ``events`` (schema above; partitioned by user by the caller). A place is
   * ``(h3 & placeKeep) | placeOr`` (the H3 parent at the same-place resolution); the
   * handover rule applies when ``handoverMaxEvents`` > 0 and the events carry a site.
   */
  public static Dataset<Row> apply(
      Dataset<Row> events,
      long maxTimeMissingStayS,
      long minTimeStayS,
      int handoverMaxEvents,
      long placeKeep,
      long placeOr) {
    boolean hasSite = events.schema().fields().length > 3;
    return events.mapPartitions(
        new Stays(
            maxTimeMissingStayS, minTimeStayS, handoverMaxEvents, placeKeep, placeOr, hasSite),
        Encoders.row(OUT));
  }

  Stays(long gapS, long minTimeS, int handoverMaxEvents, long placeKeep, long placeOr,
      boolean hasSite) {
    this.gapS = gapS;
    this.minTimeS = minTimeS;
    this.handoverMaxEvents = handoverMaxEvents;
    this.placeKeep = placeKeep;
    this.placeOr = placeOr;
    this.hasSite = hasSite;
  }

  private long place(long h3) {
    return (h3 & placeKeep) | placeOr;
  }

  private static long seconds(long micros) {
    return Math.floorDiv(micros, MICROS); // Spark's unix_seconds
  }

  @Override
  public Iterator<Row> call(Iterator<Row> rows) {
    HashMap<String, Integer> ids = new HashMap<>();
    ArrayList<String> keys = new ArrayList<>();
    int n = 0;
    int[] user = new int[1024];
    long[] ts = new long[1024];
    long[] h3 = new long[1024];
    long[] site = new long[1024];
    while (rows.hasNext()) {
      Row r = rows.next();
      if (n == user.length) {
        int size = 2 * n;
        user = Arrays.copyOf(user, size);
        ts = Arrays.copyOf(ts, size);
        h3 = Arrays.copyOf(h3, size);
        site = Arrays.copyOf(site, size);
      }
      user[n] = PerUser.index(r.getString(0), ids, keys);
      ts[n] = r.getLong(1);
      h3[n] = r.getLong(2);
      site[n] = hasSite && !r.isNullAt(3) ? r.getLong(3) : NO_SITE;
      n++;
    }
    // bucket the events by user (counting sort), then each user's by (time, hexagon)
    int users = keys.size();
    int[] order = new int[n];
    int[] start = PerUser.bucket(user, n, users, order);
    final long[] t = ts, h = h3;
    PerUser.Order byTime = (x, y) -> t[x] < t[y] || (t[x] == t[y] && h[x] < h[y]);
    List<Row> out = new ArrayList<>();
    int[] buffer = new int[Math.max(n, 1)];
    for (int u = 0; u < users; u++) {
      PerUser.sort(order, buffer, start[u], start[u + 1], byTime);
      userStays(keys.get(u), order, start[u], start[u + 1], ts, h3, site, out);
    }
    return out.iterator();
  }

  /** A segment or a stay: hexagon, first and last instant, events, mast. */
  private static final class Part {
    long h3;
    long start;
    long end;
    int events;
    long site = NO_SITE;

    long durationS() {
      return seconds(end) - seconds(start);
    }
  }

  private void userStays(String key, int[] order, int lo, int hi, long[] ts, long[] h3,
      long[] site, List<Row> out) {
    // segments (with_segment_ids, collapse_segments)
    ArrayList<Part> segments = new ArrayList<>();
    long[] hexagons = new long[hi - lo];
    long[] sites = new long[hi - lo];
    int first = lo;
    for (int i = lo; i <= hi; i++) {
      boolean starts = i == hi;
      if (i > lo && i < hi) {
        int e = order[i], p = order[i - 1];
        starts = place(h3[e]) != place(h3[p]) || seconds(ts[e]) - seconds(ts[p]) > gapS;
      }
      if (starts && i > lo) {
        Part s = new Part();
        int m = i - first;
        int sited = 0;
        for (int j = 0; j < m; j++) {
          int e = order[first + j];
          hexagons[j] = h3[e];
          if (site[e] != NO_SITE) {
            sites[sited++] = site[e];
          }
        }
        s.h3 = mode(hexagons, m);
        s.start = ts[order[first]];
        s.end = ts[order[i - 1]];
        s.events = m;
        s.site = sited == 0 ? NO_SITE : mode(sites, sited);
        segments.add(s);
        first = i;
      }
    }
    segments.sort(Stays::byStart);
    List<Part> kept = dropSandwiched(segments);
    List<Part> merged = merge(kept);
    ArrayList<Part> lasting = new ArrayList<>();
    for (Part s : merged) {
      if (s.durationS() >= minTimeS) {
        lasting.add(s);
      }
    }
    lasting.sort(Stays::byStart);
    for (Part s : merge(lasting)) {
      out.add(RowFactory.create(key, s.h3, s.start, s.end));
    }
  }

  private static int byStart(Part a, Part b) {
    int c = Long.compare(a.start, b.start);
    return c != 0 ? c : Long.compare(a.h3, b.h3);
  }

  /** The most frequent value of values[0, m), the lowest on ties (Spark's deterministic mode). */
  private static long mode(long[] values, int m) {
    Arrays.sort(values, 0, m);
    long best = values[0];
    int bestCount = 0;
    for (int i = 0; i < m; ) {
      int j = i;
      while (j < m && values[j] == values[i]) {
        j++;
      }
      if (j - i > bestCount) {
        best = values[i];
        bestCount = j - i;
      }
      i = j;
    }
    return best;
  }

  /** filter_sandwiched_passes on segments in (start, h3) order. */
  private List<Part> dropSandwiched(List<Part> s) {
    int m = s.size();
    boolean[] sandwiched = new boolean[m];
    for (int j = 1; j < m - 1; j++) {
      Part p = s.get(j), b = s.get(j - 1), a = s.get(j + 1);
      boolean passing = p.durationS() < minTimeS;
      if (!passing && hasSite && handoverMaxEvents > 0 && p.events <= handoverMaxEvents) {
        passing = p.site != NO_SITE && p.site == b.site && p.site == a.site;
      }
      long before = place(b.h3);
      sandwiched[j] = passing && before == place(a.h3) && place(p.h3) != before;
    }
    ArrayList<Part> kept = new ArrayList<>(m);
    for (int j = 0; j < m; j++) {
      boolean nextSandwiched = j + 1 < m && sandwiched[j + 1];
      if (!(sandwiched[j] && !nextSandwiched)) {
        kept.add(s.get(j));
      }
    }
    return kept;
  }

  /** merge_stays on parts in (start, h3) order. */
  private List<Part> merge(List<Part> parts) {
    ArrayList<Part> merged = new ArrayList<>();
    Part group = null;
    long bestDuration = 0;
    Part previous = null;
    for (Part p : parts) {
      long here = place(p.h3);
      boolean starts =
          previous == null
              || here != place(previous.h3)
              || seconds(p.start) - seconds(previous.end) > gapS;
      long duration = p.durationS();
      if (starts) {
        group = new Part();
        group.h3 = p.h3;
        group.start = p.start;
        group.end = p.end;
        bestDuration = duration;
        merged.add(group);
      } else {
        group.start = Math.min(group.start, p.start);
        group.end = Math.max(group.end, p.end);
        // max_by(h3, (duration, -h3)): the longest part, the lowest hexagon on ties
        if (duration > bestDuration || (duration == bestDuration && p.h3 < group.h3)) {
          group.h3 = p.h3;
          bestDuration = duration;
        }
      }
      previous = p;
    }
    return merged;
  }
}
