# Without shared_preload_libraries the SQL API and capture work; there is
# no worker, and CREATE EXTENSION says so.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = PostgreSQL::Test::Cluster->new('plain');
$node->init;
$node->start;

my ($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION webhook');
is($ret, 0, 'CREATE EXTENSION works without preloading');
like($err, qr/WARNING:  webhook is not in shared_preload_libraries: events are queued but not delivered/,
	'and warns that nothing will be delivered');
like($err, qr/HINT:  Add webhook to shared_preload_libraries and restart the server\./, 'with a hint');

$node->safe_psql('postgres', WebhookTest::slackchat_schema());
$node->safe_psql('postgres', q{
	SELECT webhook.create_endpoint('http://127.0.0.1:9/', verify => false);
	INSERT INTO message (channel_id, content) VALUES ('c', 'hello');
	INSERT INTO reaction (message_id, reaction) VALUES (1, 'ok');
});
is($node->safe_psql('postgres', "SELECT string_agg(update_type, ',' ORDER BY id) FROM webhook.queue"),
	'message_created,message_changed', 'changes are captured');
is($node->safe_psql('postgres', "LOAD 'webhook'; SHOW webhook.batch_size"), '500', 'settings are defined once the library is loaded');
is($node->safe_psql('postgres', "LOAD 'webhook'; SHOW webhook.databases"), '', 'databases included');
is($node->safe_psql('postgres', 'SELECT webhook._served()'),
	'webhook is not in shared_preload_libraries, so no worker runs', 'the reason is given to endpoints');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook worker'"),
	'0', 'no worker runs');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook launcher'"),
	'0', 'no launcher either');

$node->stop;
done_testing();
