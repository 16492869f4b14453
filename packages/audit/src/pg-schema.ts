import type pg from 'pg';

/**
 * Runs `schema` (CREATE … IF NOT EXISTS statements) in one transaction under
 * the advisory lock `lockId`: gateways sharing the database may start
 * together, and concurrent CREATE IF NOT EXISTS can still collide in
 * PostgreSQL's catalog without it.
 */
export async function ensureSchema(pool: pg.Pool, lockId: number, schema: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [lockId]);
    await client.query(schema);
    await client.query('COMMIT');
  } catch (e) {
    // The error that matters is the one above; a failed rollback only means the connection is gone too.
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}
