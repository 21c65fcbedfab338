package org.mobiterra;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;

/**
 * A partition's rows grouped by user in primitive arrays (Stays, AcceptedEvents): row i
 * has user index user[i] in 0..users-1; {@link #bucket} lists the rows user by user
 * (counting sort) and {@link #sort} orders one user's rows.
 */
final class PerUser {
  private PerUser() {}

  /** Whether row x comes before row y. */
  interface Order {
    boolean before(int x, int y);
  }

  /** The index of ``value`` in ``values``, added at the end when new. */
  static int index(String value, HashMap<String, Integer> ids, ArrayList<String> values) {
    Integer id = ids.get(value);
    if (id == null) {
      id = values.size();
      ids.put(value, id);
      values.add(value);
    }
    return id;
  }

  /** User u's rows are order[start[u], start[u + 1]); returns start, fills order. */
  static int[] bucket(int[] user, int n, int users, int[] order) {
    int[] start = new int[users + 1];
    for (int i = 0; i < n; i++) {
      start[user[i] + 1]++;
    }
    for (int u = 0; u < users; u++) {
      start[u + 1] += start[u];
    }
    int[] fill = Arrays.copyOf(start, users);
    for (int i = 0; i < n; i++) {
      order[fill[user[i]]++] = i;
    }
    return start;
  }

  /** Stable merge sort of a[lo, hi) by ``order``; tmp is as long as a. */
  static void sort(int[] a, int[] tmp, int lo, int hi, Order order) {
    for (int width = 1; width < hi - lo; width *= 2) {
      for (int left = lo; left < hi - width; left += 2 * width) {
        int mid = left + width;
        int right = Math.min(left + 2 * width, hi);
        if (!order.before(a[mid], a[mid - 1])) {
          continue; // already in order
        }
        int i = left, j = mid, k = left;
        while (i < mid && j < right) {
          tmp[k++] = order.before(a[j], a[i]) ? a[j++] : a[i++];
        }
        while (i < mid) {
          tmp[k++] = a[i++];
        }
        while (j < right) {
          tmp[k++] = a[j++];
        }
        System.arraycopy(tmp, left, a, left, right - left);
      }
    }
  }
}
