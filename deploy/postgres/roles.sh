#!/bin/sh
# The two roles of a service's database (deploy/README.md, "The database roles"):
#
# - MIGRATOR_ROLE owns the database and its schema `public`: the migrations connect as it (the
#   settings' <PREFIX>MIGRATION_DATABASE_URL) to create, alter and drop tables, and to create the
#   trusted extension pg_trgm, which a database's owner may. It is no superuser.
# - RUNTIME_ROLE is the service's (<PREFIX>DATABASE_URL): it may connect, and read, insert,
#   update and delete the rows of the tables the migrator creates, now or in any later migration
#   (default privileges), and use their sequences; it cannot create, alter, drop or truncate a
#   table, nor create a temporary one.
#
# docker-compose.yml runs it before each migration step, connected through the database's socket
# as its superuser; the dev overlay's Postgres runs it when it creates its database (a file of
# /docker-entrypoint-initdb.d in the official image). Elsewhere run it once as a superuser, with
# libpq's variables (PGHOST, PGPORT, PGPASSWORD, ...) for the server, and POSTGRES_USER and
# POSTGRES_DB for the superuser and the service's database:
#
#   POSTGRES_USER=postgres POSTGRES_DB=users MIGRATOR_ROLE=users_migrator MIGRATOR_PASSWORD=... \
#     RUNTIME_ROLE=users RUNTIME_PASSWORD=... sh deploy/postgres/roles.sh
#
# It creates the roles that do not exist and sets both passwords, so it also changes them; it
# refuses a runtime role that may do more than the above (a superuser, a member of the migrator).
# The passwords reach the server as settings of this session, not inside the statements that
# make the roles (which log_statement = 'ddl' logs) nor in an error it reports. Sourced or
# executed (the image may do either), it ends with psql's status, so a failure stops the image's
# initialisation.
psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 \
  --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" \
  --set=migrator="$MIGRATOR_ROLE" --set=migrator_password="$MIGRATOR_PASSWORD" \
  --set=runtime="$RUNTIME_ROLE" --set=runtime_password="$RUNTIME_PASSWORD" <<'SQL'
SET database_roles.migrator = :'migrator';
SET database_roles.migrator_password = :'migrator_password';
SET database_roles.runtime = :'runtime';
SET database_roles.runtime_password = :'runtime_password';
DO $roles$
DECLARE
  migrator constant text := current_setting('database_roles.migrator');
  runtime constant text := current_setting('database_roles.runtime');
  role text;
  password text;
BEGIN
  IF migrator = '' OR runtime = '' OR migrator = runtime THEN
    RAISE EXCEPTION 'MIGRATOR_ROLE and RUNTIME_ROLE must name two roles';
  END IF;
  FOR role, password IN
    VALUES (migrator, current_setting('database_roles.migrator_password')),
           (runtime, current_setting('database_roles.runtime_password'))
  LOOP
    IF password = '' THEN
      RAISE EXCEPTION 'no password for the role %', role;
    END IF;
    BEGIN
      EXECUTE format(
        CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = role)
          THEN 'ALTER ROLE %I LOGIN PASSWORD %L' ELSE 'CREATE ROLE %I LOGIN PASSWORD %L' END,
        role, password);
    EXCEPTION WHEN OTHERS THEN
      -- Raised again without the statement, which holds the password.
      RAISE EXCEPTION 'the role %: %', role, SQLERRM;
    END;
  END LOOP;
  IF pg_has_role(runtime, migrator, 'MEMBER') OR EXISTS (
    SELECT FROM pg_roles WHERE rolname = runtime
      AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
  ) THEN
    RAISE EXCEPTION 'the role % may do more than read and write rows', runtime
      USING HINT = 'Give the service a role of its own: deploy/README.md, "The database roles".';
  END IF;

  -- The migrator owns the database, so the trusted extensions are its to create, and the schema.
  EXECUTE format('ALTER DATABASE %I OWNER TO %I', current_database(), migrator);
  EXECUTE format('ALTER SCHEMA public OWNER TO %I', migrator);
  -- Nobody else connects, creates in the schema (Postgres 15 and later revoke that already) or
  -- creates temporary tables; the runtime role connects and uses the schema.
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), runtime);
  REVOKE ALL ON SCHEMA public FROM PUBLIC;
  EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', runtime);
  -- Rows of the tables the migrator creates from now on, and values of their sequences (those
  -- of serial and identity columns). Functions, the triggers' among them, are executable by
  -- every role unless revoked, and run with the rights of the role that fires them.
  EXECUTE format(
    'ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public'
    ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', migrator, runtime);
  EXECUTE format(
    'ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO %I',
    migrator, runtime);
  -- And of those it created already, when this runs on a migrated database.
  EXECUTE format(
    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', runtime);
  EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', runtime);
END
$roles$;
SQL
