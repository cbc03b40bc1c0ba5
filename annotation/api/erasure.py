"""Erasure over the API: staff erase an account; a person may erase their own."""

from dataclasses import asdict

from django.contrib.auth import get_user_model
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.services.erasure import user_erase
from config.errors import Forbidden, ValidationFailed


class ErasureResultSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    pseudonym = serializers.CharField()
    labels_kept = serializers.IntegerField()
    rationales_removed = serializers.IntegerField()
    rationales_kept = serializers.IntegerField()
    tokens = serializers.IntegerField()
    sessions = serializers.IntegerField()
    memberships = serializers.IntegerField()
    invitations = serializers.IntegerField()
    leases = serializers.IntegerField()


class OwnErasureSerializer(serializers.Serializer):
    password = serializers.CharField(help_text="Your current password, to confirm.")
    confirm = serializers.CharField(help_text='The word "erase".')


class UserEraseView(APIView):
    @extend_schema(request=None, responses=ErasureResultSerializer)
    def post(self, request, user_id: int):
        if not request.user.is_staff:
            raise Forbidden("only platform staff erase accounts", code="staff_only")
        user = get_user_model().objects.filter(pk=user_id).first()
        if user is None:
            raise Http404("No such user.")
        return Response(asdict(user_erase(user=user, actor=request.user)))


class OwnErasureView(APIView):
    """Erase your own account now. Your labels stay, under a pseudonym nobody can link back to
    you; you are signed out everywhere and cannot sign in again."""

    @extend_schema(request=OwnErasureSerializer, responses=ErasureResultSerializer)
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        if data.get("confirm") != "erase":
            raise ValidationFailed('send "confirm": "erase" to erase your account', field="confirm")
        password = data.get("password")
        if not isinstance(password, str) or not request.user.check_password(password):
            raise ValidationFailed("the password is not right", field="password")
        return Response(asdict(user_erase(user=request.user, actor=request.user)))
