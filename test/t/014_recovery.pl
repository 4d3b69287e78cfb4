# Recovering after an outage (webhook.redeliver_failed): deliveries that
# failed while the receiver was down are sent again once it is fixed, with
# their original webhook-id, and arrive.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('recovery');
my $recv = start_receiver();
my $ep = create_endpoint($node, $recv->url('/down'));
my $other = create_endpoint($node, $recv->url('/other'));

# The receiver breaks: every delivery fails, through the whole retry schedule.
$recv->set_script(paths => { '/down' => { status => 500 } });
my @events = map { $node->safe_psql('postgres', "SELECT webhook.emit('outage', '{\"n\": $_}')") } 1 .. 5;
ok(wait_events_done($node, @events), 'the events were fanned out and tried to the end of the schedule');
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT status || '/' || attempts, ',') FROM webhook.delivery WHERE endpoint_id = $ep"),
	'failed/4', "the receiver's deliveries all failed, after four attempts each");
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT status, ',') FROM webhook.delivery WHERE endpoint_id = $other"),
	'delivered', 'the other endpoint got its own');
my %failed_ids = map { $_->{headers}{'webhook-id'} => 1 } $recv->deliveries('/down');
is(scalar(keys %failed_ids), 5, 'five webhook-ids were tried');

# Fixed: redeliver_failed sends them again.
$recv->set_script();
my $before = scalar($recv->deliveries('/down'));
is($node->safe_psql('postgres', "SELECT webhook.redeliver_failed($ep)"), '5',
	'redeliver_failed queues the five failures');
ok(wait_idle($node), 'and they are delivered');
my @again = ($recv->deliveries('/down'))[ $before .. scalar($recv->deliveries('/down')) - 1 ];
is(scalar(@again), 5, 'five requests arrived');
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @again ], [ sort keys %failed_ids ],
	'each with the webhook-id of a failed delivery');
is_deeply([ sort map { $_->{status} } @again ], [ (200) x 5 ], 'and the fixed receiver took them');
is($node->safe_psql('postgres',
	"SELECT status, count(*) FROM webhook.delivery WHERE endpoint_id = $ep GROUP BY 1 ORDER BY 1"),
	"delivered|5\nfailed|5", 'the failed deliveries stay beside the delivered new attempts');
is($node->safe_psql('postgres', "SELECT webhook.redeliver_failed($ep)"), '0',
	'calling it again sends nothing twice');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE endpoint_id = $other"), '5',
	'nothing was sent again to the other endpoint');

$recv->stop;
$node->stop;
done_testing();
