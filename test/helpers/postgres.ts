/** The PostgreSQL the suite runs against: TEST_DATABASE_URL, or this project's machines' default. */
export function postgresUrl(): string {
  return process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
}
