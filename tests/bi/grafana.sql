-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/pgx/handler_checkhealth.go (CheckHealth -> pgxpool Ping -> pgx pgconn.Ping, which sends this comment-only simple query; the "Save & test" health check on the pgx code path)
-- ping
;;
-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/sqleng/handler_checkhealth.go (CheckHealth -> database/sql Ping on the lib/pq code path; lib/pq's conn.Ping sends an empty statement)
;
;;
-- source: grafana/grafana/public/app/plugins/datasource/postgres/datasource.ts (testDatasource of the pre-SQL-package frontend: health check run as a query)
SELECT 1
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getVersion, run by configuration/useAutoDetectFeatures.ts when the data source is set up)
SELECT current_setting('server_version_num')::int/100 as version
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getTimescaleDBVersion, run by configuration/useAutoDetectFeatures.ts for server version >= 906)
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (showSchemas: schema list)
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (showTables() without schema: table picker of the query builder and SQL completion, datasource.ts fetchTables)
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (showTables('public'): table list for one schema)
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getSchema('items'): column picker of the query builder, datasource.ts fetchFields)
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('items'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('items'))[1]
          AND quote_ident(table_name) = (parse_ident('items'))[2]
        ELSE quote_ident(table_name) = 'items'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getSchema('public.items'): column picker for a schema-qualified table)
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('public.items'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('public.items'))[1]
          AND quote_ident(table_name) = (parse_ident('public.items'))[2]
        ELSE quote_ident(table_name) = 'public.items'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END
;;
-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (querySchemas: schema list for the Grafana SQL schema API)
SELECT schema_name FROM information_schema.schemata
		 WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'
		 ORDER BY schema_name
;;
-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (queryTables; $1 bound to 'public')
SELECT table_name FROM information_schema.tables
		 WHERE table_schema = 'public' AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name
;;
-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (queryColumns; $1 = 'public', $2 = 'items')
SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = 'public' AND table_name = 'items'
		 ORDER BY ordinal_position
;;
-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/sqlUtil.ts (toRawSql: query built in the visual builder with column * on table items and the default limit 50)
SELECT * FROM items LIMIT 50 
;;
-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/macros.go (time series query as typed in the editor, after macro expansion: $__timeGroupAlias(ts,'5m') and $__timeFilter(ts) over 2024-01-01T00:00:00Z..06:00:00Z; assumes events has a timestamp column ts)
SELECT
  floor(extract(epoch from ts)/300)*300 AS "time",
  count(*) AS "value"
FROM events
WHERE
  ts BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T06:00:00Z'
GROUP BY 1
ORDER BY 1
;;
-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/macros.go (table query after expansion of $__timeFrom() and $__timeTo(); assumes events.ts)
SELECT count(*) FROM events WHERE ts >= '2024-01-01T00:00:00Z' AND ts < '2024-01-01T06:00:00Z'
;;
