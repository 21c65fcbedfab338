package org.mobiterra;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.spark.sql.api.java.UDF2;

/**
 * The pseudonym of a user id: hex HMAC-SHA256 under a key (given as hex), its first 32
 * characters. The same value as jobs.pseudonym.user_key's built-in Spark expression, at
 * about half its cost per event: one Mac per task thread, no hex round trip inside. A user
 * has many events: each thread keeps the pseudonyms it made (up to CACHED per key, then
 * starts again), so most events cost a map lookup, not an HMAC.
 */
public final class UserKey implements UDF2<String, String, String> {
  private static final char[] HEX = "0123456789abcdef".toCharArray();
  private static final int HEX_CHARS = 32;
  private static final int CACHED = 1 << 16;
  private static final ThreadLocal<Keyed> MAC = new ThreadLocal<>();

  private static final class Keyed {
    final String keyHex;
    final Mac mac;
    final HashMap<String, String> made = new HashMap<>(2 * CACHED);

    Keyed(String keyHex) throws Exception {
      byte[] key = new byte[keyHex.length() / 2];
      for (int i = 0; i < key.length; i++) {
        key[i] = (byte) Integer.parseInt(keyHex.substring(2 * i, 2 * i + 2), 16);
      }
      this.keyHex = keyHex;
      this.mac = Mac.getInstance("HmacSHA256");
      this.mac.init(new SecretKeySpec(key, "HmacSHA256"));
    }
  }

  /** An HMAC-SHA256 under a key given as hex (one per thread: a Mac is not thread-safe). */
  static Mac mac(String keyHex) throws Exception {
    return new Keyed(keyHex).mac;
  }

  /** The pseudonym of ``userId`` under ``mac``: its HMAC's first 32 hex characters. */
  static String pseudonym(Mac mac, String userId) {
    byte[] h = mac.doFinal(userId.getBytes(StandardCharsets.UTF_8));
    char[] out = new char[HEX_CHARS];
    for (int i = 0; i < HEX_CHARS / 2; i++) {
      out[2 * i] = HEX[(h[i] >> 4) & 15];
      out[2 * i + 1] = HEX[h[i] & 15];
    }
    return new String(out);
  }

  @Override
  public String call(String userId, String keyHex) throws Exception {
    if (userId == null || keyHex == null) {
      return null;
    }
    Keyed keyed = MAC.get();
    if (keyed == null || !keyed.keyHex.equals(keyHex)) {
      keyed = new Keyed(keyHex);
      MAC.set(keyed);
    }
    String known = keyed.made.get(userId);
    if (known != null) {
      return known;
    }
    String made = pseudonym(keyed.mac, userId);
    if (keyed.made.size() >= CACHED) {
      keyed.made.clear();
    }
    keyed.made.put(userId, made);
    return made;
  }
}
