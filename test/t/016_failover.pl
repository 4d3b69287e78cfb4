# Failover: a streaming standby runs no delivery worker and logs nothing
# alarming; with synchronous replication, events committed on the primary
# while the receiver is down are pending when the primary stops (immediate),
# and the promoted standby's worker delivers every one of them at least once,
# with the webhook-id the old primary would have used.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
# the same settings as webhook_node's, but for the served database, which is
# left to its default ("postgres") so that this holds whether one database or
# every database with the extension is served
$primary->append_conf('postgresql.conf', q{
shared_preload_libraries = 'webhook'
webhook.retry_schedule = '1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s'
webhook.timeout = '5s'
log_min_messages = 'log'
timezone = 'UTC'
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION webhook');
$primary->safe_psql('postgres', slackchat_schema());

my $recv = start_receiver();
my $ep = create_endpoint($primary, $recv->url('/hook'));

# The events (queue ids) whose webhook-id the receiver has got at least once.
sub received_events
{
	my %ids;
	for my $r ($recv->deliveries('/hook'))
	{
		$ids{$1} = 1 if ($r->{headers}{'webhook-id'} // '') =~ /^msg_(\d+)_\Q$ep\E$/;
	}
	return \%ids;
}

# The primary delivers before there is a standby.
burst($primary, 20, 'before');
ok(wait_idle($primary), 'the primary delivers its first events');

# A streaming standby, then synchronous replication to it.
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'\n");
$primary->reload;
ok($primary->poll_query_until('postgres',
		"SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'", 'sync'),
	'the standby is synchronous');

# The receiver goes down; every event committed now waits for the standby's
# flush, and its deliveries fail on the primary.
$recv->stop;
burst($primary, 50, 'failover');
my @events = split /\n/, $primary->safe_psql('postgres', q{
	SELECT id FROM webhook.queue WHERE channel = 'failover'
	UNION SELECT event_id FROM webhook.delivery WHERE event->>'channel' = 'failover'
	ORDER BY 1});
is(scalar(@events), 50, 'the 50 events are on the primary');
# three attempts each (a second apart): the standby runs meanwhile, long
# enough for a worker failing on it to show in its log
ok(wait_until(sub {
	$primary->safe_psql('postgres',
		"SELECT count(*) FROM webhook.delivery WHERE event->>'channel' = 'failover' AND attempts >= 3 AND last_error IS NOT NULL") == 50 }),
	'their deliveries fail while the receiver is down');
is($primary->safe_psql('postgres',
		"SELECT count(*) FROM webhook.delivery WHERE event->>'channel' = 'failover' AND status = 'delivered'"),
	'0', 'none is delivered by the primary');

# The standby has replayed them and runs no delivery worker, whatever the
# worker's name (one delivery worker, or a launcher and its workers).
$primary->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM message WHERE channel_id = 'failover'"),
	'50', 'the standby has the events');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type ILIKE '%webhook%'"),
	'0', 'no webhook worker on the standby');
cmp_ok($primary->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type ILIKE '%webhook%'"),
	'>', 0, 'while the primary has one');

# The standby's log, before its promotion: no line about webhook or a
# background worker (a worker started and failing would log its exit every
# second), and no ERROR, FATAL or PANIC at all.
# (The log's own lines, not the statements the test ran or their continuation
# lines.)
sub log_lines
{
	my ($node) = @_;
	return grep { /^\d{4}-\d\d-\d\d / && !/ statement: / } split /\n/, slurp_file($node->logfile);
}
my @bad = grep { /\b(ERROR|FATAL|PANIC):/ || /background worker|webhook/i } log_lines($standby);
is(join("\n", @bad), '', 'the standby logs nothing alarming');

# The primary goes, the standby is promoted and the receiver is back.
$primary->stop('immediate');
$recv->start;
$standby->promote;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 'f', 'the standby is promoted');
ok(wait_until(sub {
	$standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type ILIKE '%webhook%'") > 0 }),
	'its worker starts');

# Nothing committed is lost: each of the 50 events arrives at least once,
# with the webhook-id msg_<event>_<endpoint> the old primary would have sent.
ok(wait_until(sub {
	my $got = received_events();
	!grep { !$got->{$_} } @events }),
	'the promoted standby delivers every event the old primary had not');
my $got = received_events();
my @missing = grep { !$got->{$_} } @events;
is("@missing", '', 'no event missing');
ok($standby->poll_query_until('postgres',
		"SELECT count(*) FROM webhook.delivery WHERE event->>'channel' = 'failover' AND status = 'delivered'",
		'50'), 'and records them as delivered');
ok($standby->poll_query_until('postgres', 'SELECT count(*) FROM webhook.queue', '0'), 'queue drained');

# The new primary keeps capturing and delivering.
burst($standby, 5, 'after');
ok(wait_idle($standby), 'new events are delivered after the promotion');
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM webhook.delivery WHERE event->>'channel' = 'after' AND status = 'delivered'"),
	'5', 'all 5 of them');

# And the promoted standby's log has no error from webhook.
my @errors = grep { /\b(ERROR|FATAL|PANIC):/ && /webhook/i } log_lines($standby);
is(join("\n", @errors), '', 'no error from webhook after the promotion');

$recv->stop;
$standby->stop;
done_testing();
