# Every database with the extension is served: the launcher keeps one worker
# per database, starts one when CREATE EXTENSION commits, stops it at DROP
# EXTENSION, DROP DATABASE and when webhook.databases leaves the database
# out, and a database it cannot serve is told why.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

# no parallel workers: the slots counted below are the launchers' and workers'
my $node = webhook_node('dbs', no_schema => 1, conf => "max_parallel_workers_per_gather = 0\nmax_prepared_transactions = 2\n");
my $recv = start_receiver();

# Create an endpoint in $db on $path and wait for its handshake; returns its id.
sub endpoint_in
{
	my ($db, $path) = @_;
	my $id = $node->safe_psql($db,
		"SELECT id FROM webhook.create_endpoint('" . $recv->url($path) . "', events => '{tick}')");
	ok(wait_until(sub {
			$node->safe_psql($db, "SELECT state FROM webhook.endpoint WHERE id = $id") eq 'verified' },
			undef, "endpoint $id in $db to be verified"),
		"$db: the endpoint is verified by its worker");
	return $id;
}

# Emit a tick in $db carrying the database's name; true once it reached $path.
sub tick
{
	my ($db, $path) = @_;
	my $before = scalar($recv->deliveries($path));
	$node->safe_psql($db, "SELECT webhook.emit('tick', jsonb_build_object('db', current_database()))");
	return $recv->wait_for_deliveries($before + 1, $path);
}

# The databases a worker runs in, sorted.
sub served
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
}

# Set webhook.databases and wait until the launcher and new sessions see it.
sub set_databases
{
	my ($value) = @_;
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres',
		defined $value ? "ALTER SYSTEM SET webhook.databases = '$value'" : 'ALTER SYSTEM RESET webhook.databases');
	$node->reload;
	$node->wait_for_log(qr/webhook launcher reloaded its settings/, $offset);
	$node->poll_query_until('postgres', "SELECT current_setting('webhook.databases') = '" . ($value // '') . "'")
	  or die 'reload not applied';
}

# 1. Two databases served at once, each delivering its own events.
for my $db ('alpha', 'beta')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($ret, $out, $err) = $node->psql($db, 'CREATE EXTENSION webhook');
	is($ret, 0, "$db: CREATE EXTENSION");
	unlike($err, qr/WARNING/, "$db: no warning, a worker will serve it");
}
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname IN ('alpha', 'beta')"),
	'a worker runs in each database');
endpoint_in('alpha', '/alpha');
endpoint_in('beta', '/beta');
ok(tick('alpha', '/alpha'), 'alpha delivers its event');
ok(tick('beta', '/beta'), 'beta delivers its event');
ok(tick('alpha', '/alpha') && tick('beta', '/beta'), 'and again, each');
my @alpha = map { json_decode($_->{body})->{data}{db} } $recv->deliveries('/alpha');
my @beta = map { json_decode($_->{body})->{data}{db} } $recv->deliveries('/beta');
is_deeply([ \@alpha, \@beta ], [ [ 'alpha', 'alpha' ], [ 'beta', 'beta' ] ],
	'each endpoint got its own database\'s events only');
is(served(), 'alpha,beta,postgres', 'one worker per database');

# 2. A third database gets the extension while the server runs.
$node->safe_psql('postgres', 'CREATE DATABASE gamma');
$node->safe_psql('gamma', 'CREATE EXTENSION webhook');
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'gamma')"),
	'gamma: a worker starts after CREATE EXTENSION, with no restart');
is($node->safe_psql('gamma', 'SELECT webhook._served() IS NULL'), 't', 'gamma: served');
endpoint_in('gamma', '/gamma');
ok(tick('gamma', '/gamma'), 'gamma delivers its event');

# CREATE EXTENSION in a prepared transaction is refused: COMMIT PREPARED would
# not tell the launcher, and the database would never be served.
$node->safe_psql('postgres', 'CREATE DATABASE prepared');
my ($pret, $pout, $perr) = $node->psql('prepared',
	"BEGIN; CREATE EXTENSION webhook; PREPARE TRANSACTION 'with_webhook'");
like($perr, qr/ERROR:  cannot PREPARE a transaction that created extension "webhook"/,
	'CREATE EXTENSION cannot be prepared');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0', 'nothing was prepared');
is($node->safe_psql('prepared', "SELECT count(*) FROM pg_extension WHERE extname = 'webhook'"), '0',
	'and the extension is not there');
$node->safe_psql('postgres', 'DROP DATABASE prepared');

# 3. DROP EXTENSION: the worker goes and is not started again.
my $offset = -s $node->logfile;
$node->safe_psql('beta', 'DROP EXTENSION webhook');
ok($node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT FROM pg_stat_activity
		WHERE backend_type = 'webhook worker' AND datname = 'beta')"), 'beta: the worker goes at DROP EXTENSION');
ok($node->wait_for_log(qr/webhook worker for database "beta" exits: the extension is not installed/, $offset),
	'and says why');
# The launcher looks at everything again at a reload; a round trip in alpha after it.
set_databases('');
ok(tick('alpha', '/alpha'), 'alpha still delivers');
is(served(), 'alpha,gamma,postgres', 'beta has no worker any more');
unlike(slurp_file($node->logfile, $offset), qr/webhook worker started for database "beta"/,
	'and none was started again');

# CREATE EXTENSION again: served again.
$node->safe_psql('beta', 'CREATE EXTENSION webhook');
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'beta')"),
	'beta: a worker again after CREATE EXTENSION');
endpoint_in('beta', '/beta2');
ok(tick('beta', '/beta2'), 'beta delivers again');

# 4. DROP DATABASE (no FORCE) succeeds while a worker serves it; the worker
# is not started again.
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE gamma');
is($ret, 0, 'DROP DATABASE of a served database succeeds') or diag($err);
is(served(), 'alpha,beta,postgres', 'and its worker is gone');
# ALTER DATABASE RENAME needs the database to itself too; the worker comes back.
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE beta RENAME TO beta_renamed');
is($ret, 0, 'ALTER DATABASE RENAME of a served database succeeds') or diag($err);
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'beta_renamed')"),
	'and its worker comes back');
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE beta_renamed RENAME TO beta');
is($ret, 0, 'renamed back') or diag($err);
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'beta')"),
	'its worker back again');

# A session killed while its RENAME (or DROP) waits ends the pause too: the
# worker comes back. The RENAME stops the worker, then waits to update the
# database's row, which another open transaction updated.
my $first = $node->background_psql('postgres');
$first->query_safe('BEGIN');
$first->query_safe('ALTER DATABASE beta CONNECTION LIMIT 50');
my $second = $node->background_psql('postgres', on_error_stop => 0);
$second->query_until(qr/started/,
	"SET application_name = 'second_rename';\n\\echo started\nALTER DATABASE beta RENAME TO beta_second;\n");
ok($node->poll_query_until('postgres', "SELECT wait_event_type = 'Lock' FROM pg_stat_activity
		WHERE application_name = 'second_rename'"), 'a RENAME waits for another transaction');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'beta'"),
	'0', 'with the worker stopped');
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = 'second_rename'");
eval { $second->quit };    # its server side is gone: psql may have left first
$first->query_safe('ROLLBACK');
$first->quit;
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'beta')"),
	'its session terminated, the database is served again');
ok(tick('beta', '/beta2'), 'and delivers');

# Someone else's attempt (refused) does not stop the worker.
my $alpha_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'alpha'");
$node->safe_psql('postgres', 'CREATE ROLE creator LOGIN CREATEDB');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE creator; CREATE DATABASE copy TEMPLATE alpha');
like($err, qr/permission denied to copy database "alpha"/, 'a non-owner cannot copy a served database');
is($node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'alpha'"),
	$alpha_pid, 'and its worker was not stopped for the attempt');

# 5. webhook.databases restricts, and a reload applies it.
set_databases('postgres, alpha');
ok($node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT FROM pg_stat_activity
		WHERE backend_type = 'webhook worker' AND datname = 'beta')"), 'beta: its worker stops once left out');
is($node->safe_psql('beta', 'SELECT webhook._served()'),
	'database "beta" is not in webhook.databases, so no worker serves it', 'beta: _served() says why');
my $beta_ep = $node->safe_psql('beta',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/beta3') . "')");
is($node->safe_psql('beta', "SELECT state || ': ' || state_reason FROM webhook.endpoint WHERE id = $beta_ep"),
	'pending: database "beta" is not in webhook.databases, so no worker serves it',
	'beta: a new endpoint says why nothing happens');
my $beta_nv = $node->safe_psql('beta',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/beta4') . "', verify => false)");
my $unlisted = 'database "beta" is not in webhook.databases, so no worker serves it';
is($node->safe_psql('beta', "SELECT string_agg(name || ': ' || state_reason, ' | ' ORDER BY id)
		FROM webhook.endpoint_status"),
	"endpoint_1: $unlisted | endpoint_2: $unlisted | endpoint_3: verification skipped (verify => false); $unlisted",
	'beta: endpoint_status gives the reason as it is now, once, whenever the endpoint was made');
ok(tick('alpha', '/alpha'), 'alpha still delivers');

# An unserved database is told at CREATE EXTENSION.
$node->safe_psql('postgres', 'CREATE DATABASE delta');
($ret, $out, $err) = $node->psql('delta', 'CREATE EXTENSION webhook');
is($ret, 0, 'delta: CREATE EXTENSION works unlisted');
like($err,
	qr/WARNING:  database "delta" is not in webhook.databases, so no worker serves it: events are queued but not delivered/,
	'delta: warned that nothing will be delivered');
like($err, qr/HINT:  Add delta to webhook.databases \(or empty it\) and reload the configuration\./, 'with a hint');

# Listed again: the handshake left pending is made.
set_databases(undef);
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'beta')"),
	'beta: a worker again once listed');
ok(wait_until(sub {
		$node->safe_psql('beta', "SELECT state FROM webhook.endpoint WHERE id = $beta_ep") eq 'verified' }),
	'beta: the pending endpoint is verified');
ok($node->poll_query_until('beta', "SELECT state_reason FROM webhook.endpoint WHERE id = $beta_nv",
		'verification skipped (verify => false)'),
	'beta: a worker serving the database clears the reason stored while it was not served');
is($node->safe_psql('beta', "SELECT count(*) FROM webhook.endpoint_status WHERE state_reason LIKE '%webhook.databases%'"),
	'0', 'beta: and endpoint_status no longer gives it');
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'delta')"),
	'delta: served too');
$node->safe_psql('postgres', 'DROP DATABASE delta');

# 6. No background worker slot left: max_worker_processes allows the other
# background workers, the launcher and three workers (postgres, alpha, beta).
my $others = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logical replication launcher'");
$node->append_conf('postgresql.conf', 'max_worker_processes = ' . ($others + 1 + 3));
$node->restart;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'webhook worker'"),
	'after the restart: the three workers run');
$node->safe_psql('postgres', 'CREATE DATABASE epsilon');
$offset = -s $node->logfile;
($ret, $out, $err) = $node->psql('epsilon', 'CREATE EXTENSION webhook');
is($ret, 0, 'epsilon: CREATE EXTENSION works with no slot free');
my $no_slot = 'no background worker slot is free to serve database "epsilon" (max_worker_processes is '
  . ($others + 4) . ')';
like($err, qr/WARNING:  \Q$no_slot\E: events are queued but not delivered/, 'epsilon: warned');
like($err, qr/HINT:  Raise max_worker_processes/, 'with a hint');
ok($node->wait_for_log(qr/webhook launcher: \Q$no_slot\E/, $offset), 'the launcher logs it');
is($node->safe_psql('epsilon', 'SELECT webhook._served()'), $no_slot, 'epsilon: _served() says why');
my $eps_ep = $node->safe_psql('epsilon',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/epsilon') . "', events => '{tick}')");
is($node->safe_psql('epsilon', "SELECT state || ': ' || state_reason FROM webhook.endpoint WHERE id = $eps_ep"),
	"pending: $no_slot", 'epsilon: the endpoint says why nothing happens');
# The launcher wakes again (two reloads) and retries, but logs it only once.
set_databases('');
set_databases(undef);
my @logged = (slurp_file($node->logfile, $offset) =~ /webhook launcher: \Q$no_slot\E/g);
is(scalar(@logged), 1, 'logged once, not at every retry');

# A slot freed (DROP EXTENSION in beta): epsilon is served.
$node->safe_psql('beta', 'DROP EXTENSION webhook');
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'epsilon')"),
	'epsilon: served once a slot is free');
ok(wait_until(sub {
		$node->safe_psql('epsilon', "SELECT state FROM webhook.endpoint WHERE id = $eps_ep") eq 'verified' }),
	'epsilon: its endpoint is verified');
ok(tick('epsilon', '/epsilon'), 'epsilon delivers');
is($node->safe_psql('epsilon', 'SELECT webhook._served() IS NULL'), 't', 'epsilon: served, no reason');

$recv->stop;
$node->stop;
done_testing();
