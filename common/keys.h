/* keys: CURVE key pairs and files, and socket setup for encrypted ZeroMQ.
 *
 * Files:
 *   key pair file (0600):    # comment lines, then
 *                            public-key = "<40 Z85 chars>"
 *                            secret-key = "<40 Z85 chars>"
 *   public key file:         the 40 Z85 characters on one line (comments allowed)
 *   authorized keys (0600):  one public key per line; '#' comments
 * A secret key is never logged and never leaves its file except into libzmq.
 */
#ifndef CADRE_KEYS_H
#define CADRE_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define KEYS_Z85_LEN 40

typedef struct {
  char public_key[KEYS_Z85_LEN + 1];
  char secret_key[KEYS_Z85_LEN + 1];
} keys_pair_t;

/* New random key pair. Returns 0 or -1 (libzmq without CURVE). */
int keys_generate(keys_pair_t *kp);
/* Writes a key pair file with mode 0600 (atomic). Returns 0 or -errno. */
int keys_save_pair(const char *path, const keys_pair_t *kp);
/* Reads a key pair file; refuses one readable by group or others. 0 or -1 with err filled. */
int keys_load_pair(const char *path, keys_pair_t *kp, char *err, size_t errlen);
/* Writes a public key file (0644). */
int keys_save_public(const char *path, const char *public_key);
/* Reads a public key given either as 40 Z85 characters or as a path to a public
 * key (or key pair) file. 0 or -1 with err filled. */
int keys_load_public(const char *key_or_path, char out[KEYS_Z85_LEN + 1], char *err, size_t errlen);
/* True when s is 40 valid Z85 characters decoding to a key. */
bool keys_valid_z85(const char *s);

/* Makes sock a CURVE server with this key pair, in ZAP domain "cadre". */
int keys_setup_server(void *sock, const keys_pair_t *kp);
/* Makes sock a CURVE client of the server whose public key is given. */
int keys_setup_client(void *sock, const keys_pair_t *kp, const char *server_public);

/* Wipes a key pair from memory. */
void keys_wipe(keys_pair_t *kp);
/* A new DEALER on ctx that is a CURVE client of the server whose public key
 * is server_key (Z85 or a file), with our key pair from key_file; the secret
 * key is wiped from memory once set. Not connected: the caller sets its other
 * options, then connects. NULL with err filled. */
void *keys_client_dealer(void *ctx, const char *key_file, const char *server_key, char *err, size_t errlen);

#endif
