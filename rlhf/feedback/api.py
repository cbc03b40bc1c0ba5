"""The reward model's preference for a task the annotator has labelled (feedback after submit)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_task
from annotation.roles import Capability
from rlhf.feedback import selectors


class RewardPreferenceSerializer(serializers.Serializer):
    preferred = serializers.ChoiceField(
        choices=["left", "right"], allow_null=True, help_text="null: the pair is not scored"
    )
    your_choice = serializers.CharField()
    agrees = serializers.BooleanField(allow_null=True)


class RewardPreferenceView(APIView):
    @extend_schema(responses=RewardPreferenceSerializer)
    def get(self, request, task_id: int):
        task = access_task(request.user, task_id, capability=Capability.ANNOTATE)
        preference = selectors.task_reward_preference(task=task, user=request.user)
        return Response(RewardPreferenceSerializer(preference).data)
